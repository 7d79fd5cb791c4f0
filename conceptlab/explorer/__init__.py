"""An interactive concept explorer in the browser: correct a sample's concepts by hand and watch
the prediction change, step through intervention policies, compare two models, read a mistake's
conceptual counterfactual. ``conceptlab explore PATH`` starts it; ``Explorer`` is its engine.

Needs the web extra: ``pip install -e ".[explore]"`` (FastAPI, uvicorn, Jinja2).
"""

from .session import Corrections, Explorer, SampleView
from .sources import ExplorerModel, find_checkpoints, load_explorer_model

__all__ = ["Corrections", "Explorer", "ExplorerModel", "SampleView", "find_checkpoints", "load_explorer_model"]
