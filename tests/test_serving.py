"""``seedline serve``: real server processes on loopback, both protocols, validation, security, parity."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from .conftest import clean_env, run_cli
from .serving_support import (
    Server,
    add_custom_step,
    free_port,
    load_model,
    object_path,
    project_with_run,
    records,
    serving,
    tamper,
)

COLUMNS = [
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
    "year",
]


@pytest.fixture(scope="module")
def penguins_served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, Server, Any, Any]]:
    """The penguins example, registered as penguins@production and served (1 MiB body limit) for the whole module."""
    from seedline.records.registry import Registry
    from seedline.records.tracking import Store
    from seedline.workflow.registration import register_run

    root, run_id = project_with_run(tmp_path_factory.mktemp("serving"))
    store = Store.find(root)
    register_run(store, run_id, "penguins")
    Registry(store).set_alias("penguins", "production", 1)
    source, model = load_model(root, "penguins@production")
    with serving(root, "penguins@production", "--max-body-mb", "1") as server:
        yield root, server, source, model


def _v2_body(rows: list[dict[str, Any]], outputs: list[str] | None = None) -> dict[str, Any]:
    kinds = {"island": "BYTES", "sex": "BYTES", "year": "INT64"}
    body: dict[str, Any] = {
        "id": "req-1",
        "inputs": [
            {
                "name": c,
                "shape": [len(rows)],
                "datatype": kinds.get(c, "FP64"),
                "data": [r[c] for r in rows],
            }
            for c in COLUMNS
        ],
    }
    if outputs:
        body["outputs"] = [{"name": o} for o in outputs]
    return body


def test_v2_protocol_answers_health_metadata_and_inference(
    penguins_served: tuple[Path, Server, Any, Any],
) -> None:
    """Live, ready, model metadata with the input schema, and infer giving the model's own predictions."""
    _, server, source, model = penguins_served
    url = server.url
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{url}/v2/models/penguins/ready").json() == {
        "name": "penguins",
        "ready": True,
    }
    meta = httpx.get(f"{url}/v2/models/penguins").json()
    assert meta["name"] == "penguins" and meta["versions"] == ["1"]
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert list(inputs) == COLUMNS
    assert inputs["island"]["datatype"] == "BYTES"
    assert inputs["island"]["parameters"]["categories"] == ["Biscoe", "Dream", "Torgersen"]
    assert inputs["island"]["parameters"]["unseen_categories"] == "ignore"
    assert (
        inputs["year"]["datatype"] == "INT64" and inputs["bill_length_mm"]["parameters"]["nullable"]
    )
    assert meta["parameters"]["parity"]["verdict"] == "bitwise"
    assert meta["parameters"]["lineage"]["run"]["id"] == source.run_id

    X = source.probe_input.iloc[:20]
    rows = records(X)
    r = httpx.post(
        f"{url}/v2/models/penguins/infer", json=_v2_body(rows, ["predict", "predict_proba"])
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["model_name"] == "penguins" and body["model_version"] == "1" and body["id"] == "req-1"
    )
    pred, proba = body["outputs"]
    assert pred["name"] == "predict" and pred["datatype"] == "BYTES" and pred["shape"] == [20]
    assert pred["data"] == model.predict(X).tolist()
    assert proba["shape"] == [20, 3] and proba["parameters"]["classes"] == [
        "Adelie",
        "Chinstrap",
        "Gentoo",
    ]
    # the JSON round trip of a float64 is exact: bitwise the model's probabilities
    assert np.array_equal(np.asarray(proba["data"]).reshape(20, 3), model.predict_proba(X))

    # one 2-D BYTES input in schema order, and the versioned route
    flat = [v for row in rows for v in (row[c] for c in COLUMNS)]
    two_d = {"inputs": [{"name": "table", "shape": [20, 7], "datatype": "BYTES", "data": flat}]}
    r2 = httpx.post(f"{url}/v2/models/penguins/versions/1/infer", json=two_d)
    assert r2.status_code == 200, r2.text
    assert r2.json()["outputs"][0]["data"] == pred["data"]


def test_requests_are_batched_once_rows_one_at_a_time_match(
    penguins_served: tuple[Path, Server, Any, Any],
) -> None:
    """Ready waits on the probe set only; the check of rows one at a time follows and switches batching on."""
    _, server, source, model = penguins_served
    deadline = time.monotonic() + 120
    batching: dict[str, Any] = {}
    while time.monotonic() < deadline and "rows_checked" not in batching:
        meta = httpx.get(f"{server.url}/v2/models/penguins").json()
        batching = meta["parameters"]["parity"]["batching"]
        time.sleep(0.1)
    assert batching == {"rows_checked": 16, "consistent": True}
    X = source.probe_input.iloc[:12]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(
            pool.map(
                lambda i: httpx.post(
                    f"{server.url}/v2/models/penguins/infer",
                    json=_v2_body(records(X.iloc[[i]]), ["predict_proba"]),
                ).json(),
                range(len(X)),
            )
        )
    got = np.asarray([a["outputs"][0]["data"] for a in answers])
    assert np.array_equal(got, model.predict_proba(X))  # batched or not, bit for bit


def test_mlflow_protocol_answers_every_input_format(
    penguins_served: tuple[Path, Server, Any, Any],
) -> None:
    """/ping and /invocations with dataframe_split, dataframe_records, instances, inputs and CSV agree with the model."""
    _, server, source, model = penguins_served
    url = server.url
    assert httpx.get(f"{url}/ping").status_code == 200
    X = source.probe_input.iloc[:10]
    rows = records(X)
    want = model.predict(X).tolist()
    split = {
        "dataframe_split": {"columns": COLUMNS, "data": [[r[c] for c in COLUMNS] for r in rows]}
    }
    bodies = [
        split,
        {"dataframe_records": rows},
        {"instances": rows},
        {"inputs": {c: [r[c] for r in rows] for c in COLUMNS}},
        {"inputs": rows},
    ]
    for body in bodies:
        r = httpx.post(f"{url}/invocations", json=body)
        assert r.status_code == 200, (body, r.text)
        assert r.json() == {"predictions": want}
    csv = X.to_csv(index=False)
    r = httpx.post(f"{url}/invocations", content=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json() == {"predictions": want}
    r = httpx.post(
        f"{url}/invocations", json={**split, "params": {"predict_method": "predict_proba"}}
    )
    assert np.array_equal(np.asarray(r.json()["predictions"]), model.predict_proba(X))
    # an unseen category follows the pipeline's policy (handle_unknown='ignore'): a prediction, no error
    odd = dict(rows[0], island="Atlantis")
    assert httpx.post(f"{url}/invocations", json={"dataframe_records": [odd]}).status_code == 200


def test_bad_payloads_get_4xx_with_messages_that_name_the_problem(
    penguins_served: tuple[Path, Server, Any, Any],
) -> None:
    """Missing column, wrong type, empty, huge, unparseable, wrong content type, wrong shape: all 4xx, never 500."""
    _, server, source, _ = penguins_served
    url = server.url
    row = records(source.probe_input.iloc[:1])[0]
    infer = f"{url}/v2/models/penguins/infer"

    def post(path: str, **kw: Any) -> httpx.Response:
        return httpx.post(f"{url}{path}" if path.startswith("/") else path, timeout=30, **kw)

    missing = post(
        "/invocations", json={"dataframe_records": [{k: v for k, v in row.items() if k != "year"}]}
    )
    assert missing.status_code == 400 and missing.json()["column"] == "year"
    assert "year" in missing.json()["message"] and "integer" in missing.json()["expected"]

    wrong = post("/invocations", json={"dataframe_records": [dict(row, bill_length_mm="long")]})
    assert wrong.status_code == 400
    assert (
        wrong.json()["column"] == "bill_length_mm"
        and "the string 'long'" in wrong.json()["message"]
    )

    body = _v2_body([row])
    body["inputs"][0]["datatype"] = "FP32"  # island holds strings
    typed = post(infer, json=body)
    assert (
        typed.status_code == 400
        and typed.json()["column"] == "island"
        and "BYTES" in typed.json()["expected"]
    )

    body = _v2_body([row])
    body["inputs"][1]["data"] = [1.0, 2.0]  # shape says 1 value
    assert "shape" in post(infer, json=body).json()["error"]

    body = _v2_body([row])
    del body["inputs"][3]
    gone = post(infer, json=body)
    assert gone.status_code == 400 and gone.json()["column"] == "flipper_length_mm"

    empty = post("/invocations", content=b"", headers={"Content-Type": "application/json"})
    assert empty.status_code == 400 and "empty" in empty.json()["message"]
    broken = post(infer, content=b'{"inputs": [', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]
    ctype = post(
        "/invocations",
        content=b"a=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ctype.status_code == 415 and "application/json" in ctype.json()["message"]
    ctype2 = post(infer, content=b"<xml/>", headers={"Content-Type": "application/xml"})
    assert ctype2.status_code == 415
    huge = post(
        infer, content=b"[" + b"1," * 600_000 + b"1]", headers={"Content-Type": "application/json"}
    )
    assert huge.status_code == 413 and "too large" in huge.json()["error"]

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 100_000

    streamed = post(infer, content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    not_object = post("/invocations", json=[1, 2, 3])
    assert not_object.status_code == 400 and "dataframe_split" in not_object.json()["message"]
    two_formats = post("/invocations", json={"inputs": {}, "instances": []})
    assert two_formats.status_code == 400
    unknown = post(f"{url}/v2/models/other/infer", json=_v2_body([row]))
    assert unknown.status_code == 404 and "penguins" in unknown.json()["error"]
    bad_output = post(infer, json=_v2_body([row], ["predict_log"]))
    assert bad_output.status_code == 400 and "predict_proba" in bad_output.json()["hint"]
    no_rows = post("/invocations", json={"dataframe_records": []})
    assert no_rows.status_code == 400

    metrics = httpx.get(f"{url}/metrics").text
    assert 'code="500"' not in metrics


def test_metrics_access_log_and_docs(penguins_served: tuple[Path, Server, Any, Any]) -> None:
    """/metrics is Prometheus text with request counts and latency, the access log is JSON lines, docs are served."""
    _, server, source, _ = penguins_served
    url = server.url
    row = records(source.probe_input.iloc[:1])[0]
    for _ in range(3):
        httpx.post(f"{url}/invocations", json={"dataframe_records": [row]})
    text = httpx.get(f"{url}/metrics").text
    assert "# TYPE seedline_requests_total counter" in text
    assert any(
        line.startswith("seedline_requests_total{")
        and 'handler="/invocations"' in line
        and 'method="POST"' in line
        and 'code="200"' in line
        for line in text.splitlines()
    )
    assert "seedline_request_duration_seconds_bucket" in text and 'le="+Inf"' in text
    assert "seedline_model_ready" in text and 'verdict="bitwise"' in text
    lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    served = [
        entry for entry in lines if entry["path"] == "/invocations" and entry["status"] == 200
    ]
    assert served and served[-1]["rows"] == 1 and served[-1]["ms"] > 0
    assert httpx.get(f"{url}/openapi.json").json()["paths"]["/v2/models/{name}/infer"]
    assert "swagger" in httpx.get(f"{url}/docs").text.lower()


def test_a_token_guards_everything_but_health(
    penguins_served: tuple[Path, Server, Any, Any],
) -> None:
    """With a token, health answers without it, every other endpoint needs 'Authorization: Bearer'."""
    root, _, source, _ = penguins_served
    row = records(source.probe_input.iloc[:1])[0]
    with serving(
        root, "penguins@1", "--no-access-log", env=clean_env(SEEDLINE_TOKEN="s3cret")
    ) as server:
        url = server.url
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
        assert httpx.get(f"{url}/ping").status_code == 200
        for path in ("/v2/models/penguins", "/metrics", "/docs", "/openapi.json"):
            r = httpx.get(f"{url}{path}")
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        denied = httpx.post(
            f"{url}/invocations",
            json={"dataframe_records": [row]},
            headers={"Authorization": "Bearer nope"},
        )
        assert denied.status_code == 401 and "bearer token" in denied.json()["error"]
        ok = httpx.post(
            f"{url}/invocations",
            json={"dataframe_records": [row]},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert ok.status_code == 200


def test_binding_beyond_loopback_without_a_token_is_refused(
    penguins_served: tuple[Path, Server, Any, Any],
) -> None:
    """--host 0.0.0.0 with no token exits before binding, and says how to fix it."""
    root = penguins_served[0]
    out = run_cli(
        root,
        "serve",
        "penguins@1",
        "--host",
        "0.0.0.0",
        "--port",
        "1",
        check=False,
        env=clean_env(SEEDLINE_TOKEN=None),
    )
    assert (
        out.returncode == 2
        and "without a bearer token" in out.stderr
        and "SEEDLINE_TOKEN" in out.stderr
    )


def test_a_tampered_model_file_is_refused(tmp_path: Path) -> None:
    """A stored model whose bytes changed is refused as corrupt; a bundle file that changed is refused too."""
    from seedline.records.tracking import Store
    from seedline.workflow.registration import register_run

    root, run_id = project_with_run(tmp_path, overrides=["pipeline.clf.n_estimators=5"])
    version = register_run(Store.find(root), run_id, "tampered")
    run_cli(root, "export", "tampered", "--format", "bundle", "-o", "bundle")
    tamper(object_path(root, version.model_object))
    out = run_cli(root, "serve", "tampered", "--port", "1", check=False)
    assert out.returncode == 2 and "is corrupt" in out.stderr
    tamper(root / "bundle" / "model.skops")
    out = run_cli(root, "serve", "bundle", "--port", "1", check=False)
    assert out.returncode == 2 and "does not match the hash recorded" in out.stderr


@pytest.mark.slow
def test_untrusted_types_are_refused_unless_trusted(tmp_path: Path) -> None:
    """A model holding a user-defined class is refused with the class named; --trust serves it."""
    from seedline.execution.runner import run

    from .conftest import git, make_project

    root = make_project(tmp_path, "penguins")
    add_custom_step(root)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "custom step")
    run_id = run(root / "seedline.yaml", overrides=["pipeline.clf.n_estimators=5"]).run_id
    refused = run_cli(root, "serve", run_id, "--port", "1", check=False)
    assert refused.returncode == 2
    assert (
        "outside seedline's trusted list: passthru.Identity" in refused.stderr
        and "--trust" in refused.stderr
    )
    with serving(root, run_id, "--trust") as server:
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        assert "--trust" in server.log_text()


def test_a_parity_mismatch_keeps_the_server_not_ready(
    penguins_served: tuple[Path, Server, Any, Any],
) -> None:
    """A version whose probe predictions differ: live, not ready, 503 with the report; the override serves and is logged."""
    import seedline
    from seedline.records.registry import Registry
    from seedline.records.tracking import Store
    from seedline.workflow.registration import register_run

    root, _, source, _ = penguins_served
    store = Store.find(root)
    registry = Registry(store)
    good = registry.resolve("penguins@1")
    other_run = seedline.run(
        root / "seedline.yaml", overrides=["seed=5", "pipeline.clf.n_estimators=10"]
    ).run_id
    other = register_run(store, other_run, "other")
    bad = registry.create_version(
        name="mismatch",
        run_id=good.run_id,
        model_object=good.model_object,
        manifest_object=good.manifest_object,
        probe_object=other.probe_object,
        probe_input_object=good.probe_input_object,
        input_schema=good.input_schema,
        model_fingerprint=good.model_fingerprint,
        predictions_fingerprint=other.predictions_fingerprint,
    )
    row = records(source.probe_input.iloc[:1])[0]
    with serving(root, bad.ref, "--no-access-log") as server:
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
        ready = httpx.get(f"{server.url}/v2/health/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert "parity check failed" in ready.json()["reason"]
        assert ready.json()["parity"]["verdict"] == "failed"
        r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": [row]})
        assert r.status_code == 503 and "not ready" in r.json()["message"]
        assert "parity check failed" in server.log_text()
    with serving(root, bad.ref, "--allow-parity-mismatch", "--no-access-log") as server:
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        assert (
            httpx.post(f"{server.url}/invocations", json={"dataframe_records": [row]}).status_code
            == 200
        )
    log = registry.parity_history(run_id=good.run_id)
    serve_checks = [c for c in log if c["action"] == "serve" and c["model"] == bad.ref]
    assert [c["overridden"] for c in serve_checks] == [True, False]


@pytest.mark.slow
def test_several_workers_serve_the_same_model(
    penguins_served: tuple[Path, Server, Any, Any],
) -> None:
    """--workers 2: both workers load the model and check parity, requests are answered, /metrics sums both."""
    root, _, source, model = penguins_served
    X = source.probe_input.iloc[:5]
    with serving(root, "penguins@production", "--workers", "2", "--no-access-log") as server:
        for _ in range(6):
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": records(X)})
            assert r.json() == {"predictions": model.predict(X).tolist()}
        assert server.log_text().count("parity check passed") == 2
        # one scrape sums every worker's counts (prometheus_client's multiprocess mode)
        text = httpx.get(f"{server.url}/metrics").text
        line = next(
            x
            for x in text.splitlines()
            if x.startswith("seedline_requests_total")
            and 'handler="/invocations"' in x
            and 'code="200"' in x
        )
        assert float(line.rsplit(" ", 1)[1]) == 6


def test_metrics_labels_are_route_templates_and_bounded(
    penguins_served: tuple[Path, Server, Any, Any],
) -> None:
    """A path cannot inject a metric line, and 2,000 unknown paths do not grow /metrics."""
    import random

    _, server, _, _ = penguins_served
    url = server.url
    with httpx.Client() as client:
        injected = client.get(
            f"{url}/v2/models/x/zz%22%7D%201%0Ainjected_metric%7Ba%3D%22", timeout=30
        )
        assert injected.status_code == 404
        client.get(f"{url}/metrics")  # so that /metrics itself is counted in both scrapes
        before = client.get(f"{url}/metrics").text
        assert "injected_metric" not in before
        assert 'handler="unmatched"' in before or 'handler="/v2/models/{name}' in before
        rng = random.Random(0)
        for _ in range(2000):
            path = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz%22{}") for _ in range(12))
            client.get(f"{url}/{path}", timeout=30)
        after = client.get(f"{url}/metrics").text
    assert len(after.splitlines()) == len(before.splitlines())
    assert "injected_metric" not in after


def test_values_beyond_64_bits_and_deep_nesting_get_400_on_both_protocols(
    penguins_served: tuple[Path, Server, Any, Any],
) -> None:
    """INT64 >= 2**63, 1e300 for an integer, an overflowing BYTES value, data nested 1,000 deep: 400, and the connection lives on."""
    _, server, source, _ = penguins_served
    url = server.url
    row = records(source.probe_input.iloc[:1])[0]
    deep = "[" * 1000 + "1" + "]" * 1000
    json_header = {"Content-Type": "application/json"}
    table = [str(row[c]) for c in COLUMNS[:-1]]
    v2_bodies = [
        json.dumps(_v2_body([dict(row, year=2**63)])),
        json.dumps(_v2_body([dict(row, year=1e300)])),
        json.dumps(
            {
                "inputs": [
                    {"name": "t", "shape": [1, 7], "datatype": "BYTES", "data": [*table, "9" * 30]}
                ]
            }
        ),
        '{"inputs": [{"name": "year", "shape": [1], "datatype": "INT64", "data": DEEP}]}'.replace(
            "DEEP", deep
        ),
    ]
    values = ", ".join(json.dumps(row[c]) for c in COLUMNS[:-1])
    split = (
        f'{{"dataframe_split": {{"columns": {json.dumps(COLUMNS)}, "data": [[{values}, YEAR]]}}}}'
    )
    mlflow_bodies = [split.replace("YEAR", v) for v in (str(2**63), "1e300", deep)]
    with httpx.Client(timeout=30) as client:
        for path, bodies in (
            ("/v2/models/penguins/infer", v2_bodies),
            ("/invocations", mlflow_bodies),
        ):
            for body in bodies:
                r = client.post(f"{url}{path}", content=body, headers=json_header)
                assert r.status_code == 400, (path, body[:80], r.text)
                # the same keep-alive connection still serves the next request
                ok = client.post(f"{url}/invocations", json={"dataframe_records": [row]})
                assert ok.status_code == 200
        binary = client.post(
            f"{url}/v2/models/penguins/infer",
            content=b'{"inputs": []}\x00\x01\x02',
            headers={
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": "14",
            },
        )
        assert binary.status_code == 400
        assert "binary data extension" in binary.json()["error"]
        assert "binary_data=False" in binary.json()["hint"]
        assert 'code="500"' not in client.get(f"{url}/metrics").text


def test_the_server_binds_first_and_parses_large_bodies_off_the_event_loop(
    penguins_served: tuple[Path, Server, Any, Any],
) -> None:
    """Bound before the model is loaded; while a 9 MB body is parsed, /v2/health/live is still answered."""
    import socket
    import threading
    import time

    root, _, source, _ = penguins_served
    row = records(source.probe_input.iloc[:1])[0]
    rows = 175_000
    body = _v2_body([row] * rows)
    body["inputs"][-1]["data"][-1] = "x"  # fails only after every value was read: no prediction
    data = json.dumps(body).encode()
    assert len(data) > 8_000_000
    with serving(root, "penguins@1", "--max-body-mb", "16", "--no-access-log") as server:
        log = server.log_text()
        assert log.index("Uvicorn running on") < log.index("parity check passed"), log
        host, port = server.url.removeprefix("http://").split(":")
        answered: list[tuple[float, float]] = []
        done = threading.Event()

        def poll_live() -> None:
            with httpx.Client(timeout=30) as client:
                while not done.is_set():
                    t = time.monotonic()
                    client.get(f"{server.url}/v2/health/live")
                    answered.append((t, time.monotonic()))

        with socket.create_connection((host, int(port))) as sock:
            head = (
                f"POST /v2/models/penguins/infer HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            )
            sock.sendall(head.encode() + data)
            sent = time.monotonic()
            poller = threading.Thread(target=poll_live)
            poller.start()
            reply = sock.recv(65536)
            replied = time.monotonic()
            done.set()
            poller.join()
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        during = [end - start for start, end in answered if start >= sent and end <= replied]
        # answered while the big body was being parsed, which the event loop alone could not do
        assert during, (answered, sent, replied)
        print(
            f"\n9 MB body answered in {replied - sent:.3f}s; /v2/health/live answered "
            f"{len(during)} times meanwhile, slowest {max(during) * 1000:.1f} ms"
        )


def test_a_server_resumes_a_paused_collector_once_its_model_is_loaded(tmp_path: Path) -> None:
    """`seedline serve` starts up with the cycle collector paused (cli.launch); the server
    switches it back on once the model is loaded, the model frozen with the rest."""
    import gc

    from fastapi.testclient import TestClient

    from seedline.core import collector
    from seedline.serving.app import ServeConfig, create_app
    from seedline.workflow.registration import resolve_source

    root, run_id = project_with_run(tmp_path)
    source = resolve_source(run_id, start=root)
    gc.unfreeze()
    collector.pause()
    try:
        app = create_app(ServeConfig(ref=run_id, project=str(root)), source=source)
        assert not gc.isenabled()
        with TestClient(app):
            deadline = time.monotonic() + 120
            while not gc.isenabled() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert app.state.served.status == "ready", app.state.served.reason
            assert gc.isenabled() and not collector.paused()
            assert gc.get_freeze_count() > 0
    finally:
        collector.resume()
        gc.unfreeze()
        gc.enable()


SUPERVISOR_PROBE = """
import gc, os, sys
import uvicorn
from seedline.core import collector
from seedline.serving.app import ServeConfig, serve
uvicorn.run = lambda *a, **k: print("collector", "on" if gc.isenabled() else "off")
collector.pause()
serve(ServeConfig(ref=sys.argv[1], project=sys.argv[2]), workers=2, port=int(sys.argv[3]))
left = [k for k in ("PROMETHEUS_MULTIPROC_DIR", "SEEDLINE_SERVE_STATE", "SEEDLINE_SERVE_CONFIG") if k in os.environ]
print("left", *left)
"""


def test_the_supervisor_of_several_workers_resumes_the_collector_before_starting_them(
    tmp_path: Path,
) -> None:
    """`serve --workers N`: the supervisor loads no model, so it resumes the paused collector
    before uvicorn starts the workers (each a fresh process); and the variables it sets for
    them do not outlive the call (a later server in the same process would otherwise look
    for its metrics in a folder since removed)."""
    import subprocess
    import sys

    root, run_id = project_with_run(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", SUPERVISOR_PROBE, run_id, str(root), str(free_port())],
        cwd=root,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[-2:] == ["collector on", "left"]
