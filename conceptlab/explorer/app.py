"""The explorer's web application: server-rendered pages and a small JSON API over ``Explorer``.

Pages are rendered on the server (Jinja2); a few lines of plain JavaScript swap the page's main
part when a link marked ``live`` is followed, so a correction updates the prediction without a
reload. Every link also works without JavaScript. The application serves its own pages, its
bundled static files, and the images and plots of the chosen test data; nothing else.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from ..models import LabelFreeCBM, PosthocCBM
from .curve import curve_svg
from .plane import nearest_sample, plane_svg, plane_view
from .session import FILTERS, ORDERS, Corrections, Explorer, SampleView

log = logging.getLogger(__name__)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # the names a browser on this machine uses for it
SAMPLES_LISTED = 100  # sample links per page of the side bar
CLASSES_SHOWN = 5  # class probabilities listed per model (plus the true class)


def top_classes(view: SampleView) -> list[int]:
    """The most probable classes after the corrections, and the true class, most probable first."""
    order = sorted(range(len(view.classes)), key=lambda k: -view.class_probs[k])
    shown = order[:CLASSES_SHOWN]
    return shown if view.true_class in shown else shown + [view.true_class]


@lru_cache(maxsize=4096)
def query_pair(key: str, value: str | int) -> str:
    """``key=value``, URL-encoded (remembered: a page's hundreds of links share most of their pairs)."""
    return urlencode({key: value})


def address(path: str, state: dict) -> str:
    """``path`` with ``state`` as its query, empty values left out (the one way every link and
    redirect of the explorer writes its state; 0 is a value, kept)."""
    return f"{path}?{'&'.join(query_pair(k, v) for k, v in state.items() if v not in ('', None))}"


def session_record(explorer: Explorer, names: Sequence[str], sample: int, fixed: Corrections) -> dict:
    """One sample of an exported session: its corrections (concept name -> value, in the order
    made) and, for each model, the true class and the predictions before and after them."""
    views = [explorer.view(n, sample, fixed) for n in names]
    concepts = explorer.model(names[0]).info.concept_names
    return {"sample": sample, "corrections": {concepts[i]: v for i, v in fixed.values.items()},
            "models": [{"model": v.model, "true_class": v.classes[v.true_class], "predicted": v.classes[v.predicted],
                        "predicted_before": v.classes[v.original_prediction],
                        "class_probs": dict(zip(v.classes, v.class_probs))} for v in views]}


def session_csv(records: Sequence[dict]) -> str:
    """``session_record``s as CSV: one row per sample and model."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["model", "sample", "corrections", "true_class", "predicted_before", "predicted", "p_true_class"])
    for record in records:
        corrections_text = ";".join(f"{c}={v:g}" for c, v in record["corrections"].items())
        for m in record["models"]:
            writer.writerow([m["model"], record["sample"], corrections_text, m["true_class"], m["predicted_before"],
                             m["predicted"], f"{m['class_probs'][m['true_class']]:.6f}"])
    return out.getvalue()


def request_host(host_header: str) -> str | None:
    """The host name of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), lower-cased."""
    try:
        return urlsplit(f"//{host_header}").hostname
    except ValueError:
        return None


def create_app(explorer: Explorer, hosts: Sequence[str] | None = LOCAL_HOSTS) -> FastAPI:
    """The FastAPI application for ``explorer`` (serve it with uvicorn, or test it with a TestClient).

    Parameters:
        explorer: the engine whose models and data the pages show.
        hosts: the only host names a request may address (its ``Host`` header); anything else is
            answered 421, so a web page that rebinds its own domain name to this machine (DNS
            rebinding) cannot read the explorer. ``None`` accepts any name (a server meant to be
            reached from other machines).
    """
    app = FastAPI(title="conceptlab explorer", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    allowed = None if hosts is None else {h.lower().strip("[]") for h in hosts}

    @app.middleware("http")
    async def known_hosts_only(request: Request, call_next):
        if allowed is not None and request_host(request.headers.get("host", "")) not in allowed:
            return Response(f"this explorer answers only to {', '.join(sorted(allowed))}", status_code=421,
                            media_type="text/plain")
        return await call_next(request)

    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    templates = Environment(loader=PackageLoader("conceptlab.explorer"), autoescape=select_autoescape(["html"]))
    first = next(iter(explorer.models))

    def model_or_404(name: str) -> str:
        if name not in explorer.models:
            raise HTTPException(404, f"no model named {name!r}")
        return name

    def corrections(name: str, fix: str) -> Corrections:
        return Corrections.parse(fix, explorer.model(name).info.n_concepts)

    def error_response(request: Request, message: str, status: int) -> Response:
        """JSON for the API, a readable page for everything a person opens."""
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        return HTMLResponse(templates.get_template("error.html").render(message=message, home="/"), status_code=status)

    @app.exception_handler(ValueError)
    async def bad_request(request: Request, err: ValueError) -> Response:
        return error_response(request, str(err), 400)

    @app.exception_handler(HTTPException)
    async def not_found(request: Request, err: HTTPException) -> Response:
        return error_response(request, str(err.detail), err.status_code)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(address("/explore", {"model": first}))

    @app.get("/explore", response_class=HTMLResponse)
    def explore(model: str = first, sample: int | None = None, fix: str = "", compare: str = "", policy: str = "uncertainty",
                filter: str = "all", class_name: str = Query("", alias="class"), fragment: bool = False,
                message: str = "", fix_for: str = "", order: str = "", page: int | None = None) -> HTMLResponse:
        name = model_or_404(model)
        order = order or "index"  # forms send the default as an empty field
        if compare:
            model_or_404(compare)
            if compare not in explorer.comparable(name):
                raise ValueError(f"{compare} was not tested on the same samples as {name}: compare models of one dataset and seed")
        offered = explorer.policies(name)
        if policy not in offered:
            raise ValueError(f"policy {policy!r} is not one of those that apply to {name}: {', '.join(offered)}")
        listed = explorer.ordered(name, explorer.samples(name, filter, class_name or None), order)
        if sample is None:
            sample = listed[0] if listed else 0
        n_pages = max(1, -(-len(listed) // SAMPLES_LISTED))
        if page is None:  # the page that holds the sample shown
            page = listed.index(sample) // SAMPLES_LISTED if sample in listed else 0
        if not 0 <= page < n_pages:
            raise ValueError(f"page {page} does not exist: the list has {n_pages} page(s) of {SAMPLES_LISTED} samples")
        if not listed:
            message = message or "no test sample matches this filter; showing sample 0"
        if fix_for and fix_for != name and fix and (
                fix_for not in explorer.models
                or explorer.model(fix_for).info.concept_names != explorer.model(name).info.concept_names):
            fix, message = "", f"corrections dropped: {fix_for} and {name} do not share their concepts"
        fixed = corrections(name, fix)
        state = {"model": name, "sample": sample, "fix": fixed.text(), "compare": compare, "policy": policy,
                 "filter": filter, "class": class_name, "order": "" if order == "index" else order}

        def link(path: str = "/explore", **changes) -> str:
            return address(path, {**state, **changes})

        curve = explorer.curve(name, sample, policy)
        views = [explorer.view(name, sample, fixed)] + ([explorer.view(compare, sample, fixed)] if compare else [])
        counterfactual = explorer.counterfactual(name, sample) if views[0].original_prediction != views[0].true_class else None
        units = explorer.units(name)[1]
        groups_done = int(fixed.units_done(units).sum())
        position = float(fixed.units_set(units).sum())  # partly corrected groups count in part
        data = explorer.data(name)
        info = explorer.model(name).info
        suggested = fixed
        if counterfactual:  # the counterfactual's concepts as corrections: added ones present, removed ones absent
            names, categorical = list(info.concept_names), info.categorical_indices()
            for key, value in (("add", 1), ("remove", 0)):
                for concept, _ in counterfactual[key]:
                    if concept in names:
                        suggested = suggested.with_value(names.index(concept), value, categorical)
        plane = plane_view(data.name, data.test.features[:1], info.concept_names) if data.test.features is not None else None
        context = {
            "state": state, "link": link, "views": views, "fixed": fixed,
            "categorical": explorer.model(name).info.categorical_indices(), "policies": offered, "filters": FILTERS,
            "models": list(explorer.models), "comparable": explorer.comparable(name),
            "listed": listed[page * SAMPLES_LISTED : (page + 1) * SAMPLES_LISTED], "page": page, "n_pages": n_pages,
            "orders": ORDERS, "order": order, "mistakes": explorer.mistakes(name),
            "n_listed": len(listed), "n_samples": explorer.n_samples(name), "accuracy": explorer.accuracy(name),
            "counterfactual": counterfactual, "message": message,
            "has_image": bool(data.image_paths), "has_plane": plane is not None, "plane_note": plane.note if plane else "",
            "dataset": data.name, "seed": data.seed, "top_classes": [top_classes(v) for v in views],
            "curve_svg": curve_svg(curve, policy, (position, views[0].class_probs[views[0].true_class], len(fixed.values))
                                   if fixed.values else None),
            "all_groups_done": groups_done == len(info.concept_groups),
            "cce_fix": suggested.text() if suggested.values != fixed.values else None,
            "projected": isinstance(explorer.model(name).model, (PosthocCBM, LabelFreeCBM)),
            "histories": [explorer.history(v.model, sample, fixed) for v in views] if fixed.values else [],
            "n_groups": len(info.concept_groups),
        }
        template = "main.html" if fragment else "page.html"
        return HTMLResponse(templates.get_template(template).render(**context))

    def explore_address(model: str, sample: int, fix: str, compare: str, policy: str, filter: str, class_name: str,
                        order: str, **extra: str) -> str:
        """Where a redirect returns to: the page state it was asked from, with ``extra``."""
        return address("/explore", {"model": model, "sample": sample, "fix": fix, "compare": compare, "policy": policy,
                                    "filter": filter, "class": class_name, "order": order, **extra})

    @app.get("/set", include_in_schema=False)
    def set_concept(model: str, sample: int, set: str, fix: str = "", compare: str = "", policy: str = "uncertainty",
                    filter: str = "all", class_name: str = Query("", alias="class"), order: str = "",
                    fragment: bool = False) -> RedirectResponse:
        """One setter pressed: ``set=INDEX:VALUE`` (1 present, 0 absent, ``predicted`` back to the
        model) applied to ``fix``, then the page with the new corrections."""
        name = model_or_404(model)
        index, _, value = set.partition(":")
        if not index.isdigit() or value not in ("1", "0", "predicted"):
            raise ValueError(f"set is INDEX:1, INDEX:0 or INDEX:predicted; got {set!r}")
        info = explorer.model(name).info
        after = corrections(name, fix).with_value(int(index), None if value == "predicted" else float(value),
                                                  info.categorical_indices())
        Corrections.parse(after.text(), info.n_concepts)  # an index out of range is refused here
        return RedirectResponse(explore_address(name, sample, after.text(), compare, policy, filter, class_name, order,
                                                fragment="1" if fragment else ""), status_code=303)

    @app.get("/step", include_in_schema=False)
    def step(model: str, sample: int, policy: str, fix: str = "", compare: str = "", filter: str = "all",
             class_name: str = Query("", alias="class"), fragment: bool = False, order: str = "") -> RedirectResponse:
        name = model_or_404(model)
        unit, after = explorer.next_step(name, sample, corrections(name, fix), policy=policy)
        return RedirectResponse(explore_address(name, sample, after.text(), compare, policy, filter, class_name, order,
                                                message=f"{policy} corrected {unit}", fragment="1" if fragment else ""),
                                status_code=303)

    @app.get("/bulk", include_in_schema=False)
    def bulk(model: str, sample: int, fix: str = "", scope: str = "all", compare: str = "", policy: str = "uncertainty",
             filter: str = "all", class_name: str = Query("", alias="class"), order: str = "",
             apply_policy: str = "", steps: int = 0, fragment: bool = False) -> RedirectResponse:
        """Correct every sample of the class shown (``scope=class``) or of the test split: either
        the concepts set by hand on this sample, or (``apply_policy`` and ``steps``) a policy's first steps."""
        name = model_or_404(model)
        fixed = corrections(name, fix)
        if scope not in ("all", "class"):
            raise ValueError(f"scope must be 'all' or 'class'; got {scope!r}")
        view = explorer.view(name, sample, fixed)
        target = view.classes[view.true_class] if scope == "class" else None
        if apply_policy:
            if apply_policy not in explorer.policies(name):
                raise ValueError(f"policy {apply_policy!r} does not apply to {name}: {', '.join(explorer.policies(name))}")
            result = explorer.bulk_policy_accuracy(name, apply_policy, steps, class_name=target)
            what, changed = f"{apply_policy}'s first {steps} correction(s)", ""
        else:
            if not fixed.values:
                raise ValueError("set at least one concept by hand first: its correction is what is applied to every sample")
            result = explorer.bulk_accuracy(name, list(fixed.values), target)
            names = explorer.model(name).info.concept_names
            what = f"correcting {', '.join(names[i] for i in fixed.values)} to their true values"
            changed = f" ({result['changed']} prediction(s) changed)"
        scope_text = f"the {result['samples']} test samples of {target}" if target else f"all {result['samples']} test samples"
        message = (f"{what} on {scope_text}: accuracy {100 * result['before']:.1f} % -> {100 * result['after']:.1f} %{changed}")
        return RedirectResponse(explore_address(name, sample, fixed.text(), compare, policy, filter, class_name, order,
                                                message=message, fragment="1" if fragment else ""), status_code=303)

    @app.get("/export", include_in_schema=False)
    def export(model: str, sample: Annotated[list[int], Query()], fix: Annotated[list[str] | None, Query()] = None,
               compare: str = "", format: str = "json") -> Response:
        """A session's corrections and predictions: each ``sample`` with the ``fix`` at the same
        position (repeat both for several samples; no ``fix`` at all: none corrected), as JSON or CSV."""
        name = model_or_404(model)
        if fix and len(fix) != len(sample):
            raise ValueError(f"give one fix per sample (an empty one for none): got {len(sample)} sample(s) and {len(fix)} fix(es)")
        if format not in ("json", "csv"):
            raise ValueError(f"format must be 'json' or 'csv'; got {format!r}")
        names = [name] + ([model_or_404(compare)] if compare else [])
        records = [session_record(explorer, names, s, corrections(name, f)) for s, f in zip(sample, fix or [""] * len(sample))]
        filename = f"{name}-sample{sample[0]}" if len(sample) == 1 else f"{name}-session"
        if format == "json":
            body, media = json.dumps({"model": name, "compare": compare or None, "samples": records}, indent=1), "application/json"
        else:
            body, media = session_csv(records), "text/csv"
        return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}.{format}"'})

    @app.get("/concept", response_class=HTMLResponse, include_in_schema=False)
    def concept(model: str, concept: int) -> HTMLResponse:
        """Test images that show one concept, clearest first, and those where the model misses it or sees it wrongly."""
        name = model_or_404(model)
        if not explorer.data(name).image_paths:
            raise HTTPException(404, f"{name}'s data has no images to show a concept with")
        examples = explorer.concept_examples(name, concept)
        probs = explorer.concept_probs(name)[:, concept].tolist()
        return HTMLResponse(templates.get_template("concept.html").render(
            model=name, concept=explorer.model(name).info.concept_names[concept], examples=examples, probs=probs,
            back=address("/explore", {"model": name})))

    @app.get("/api/plane-pick")
    def api_plane_pick(model: str, x: float, y: float) -> dict:
        """The sample drawn nearest to pixel (x, y) of the model's 2-D view (what a click there opens)."""
        name = model_or_404(model)
        data = explorer.data(name)
        view = plane_view(data.name, data.test.features, explorer.model(name).info.concept_names) if data.test.features is not None else None
        if view is None:
            raise HTTPException(404, "no 2-D view for this model's data")
        return {"sample": nearest_sample(view, x, y)}

    @app.get("/api/models")
    def api_models() -> dict:
        return {"models": [{"name": n, "dataset": m.metadata.get("dataset"), "seed": m.metadata.get("seed"),
                            "concepts": list(m.info.concept_names), "classes": list(m.info.task_names),
                            "has_bank": m.bank is not None, "comparable": explorer.comparable(n)}
                           for n, m in explorer.models.items()]}

    @app.get("/api/view")
    def api_view(model: str, sample: int, fix: str = "") -> dict:
        name = model_or_404(model)
        return explorer.view(name, sample, corrections(name, fix)).to_dict()

    @app.get("/api/next")
    def api_next(model: str, sample: int, policy: str, fix: str = "") -> dict:
        name = model_or_404(model)
        unit, after = explorer.next_step(name, sample, corrections(name, fix), policy=policy)
        return {"unit": unit, "fix": after.text(), "view": explorer.view(name, sample, after).to_dict()}

    @app.get("/api/curve")
    def api_curve(model: str, sample: int, policy: str = "uncertainty") -> dict:
        return {"policy": policy, "points": explorer.curve(model_or_404(model), sample, policy)}

    @app.get("/api/samples")
    def api_samples(model: str, filter: str = "all", class_name: str = Query("", alias="class")) -> dict:
        return {"samples": explorer.samples(model_or_404(model), filter, class_name or None)}

    @app.get("/api/counterfactual")
    def api_counterfactual(model: str, sample: int) -> dict:
        name = model_or_404(model)
        result = explorer.counterfactual(name, sample)
        if result is None:
            raise ValueError(f"{name} has no concept bank: counterfactuals need one (NAME.bank.pt beside the checkpoint, or --bank)")
        return result

    @app.get("/image/{model}/{sample}", include_in_schema=False)
    def image(model: str, sample: int) -> FileResponse:
        paths = explorer.data(model_or_404(model)).image_paths
        if not 0 <= sample < len(paths):
            raise HTTPException(404, "no such image")
        return FileResponse(paths[sample])

    @app.get("/plane/{model}/{sample}.svg", include_in_schema=False)
    def plane(model: str, sample: int) -> Response:
        name = model_or_404(model)
        data = explorer.data(name)
        view = plane_view(data.name, data.test.features, explorer.model(name).info.concept_names) if data.test.features is not None else None
        if view is None or not 0 <= sample < len(data.test):
            raise HTTPException(404, "no 2-D view for this sample")
        return Response(plane_svg(view, data.test.y, explorer.model(name).info.task_names, sample), media_type="image/svg+xml")

    return app
