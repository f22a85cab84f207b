"""Is this TorchServe ready to answer? ``python -m client.health [--run-dir DIR]``: exit status 0
when ``/ping`` says Healthy and every registered model's default version has a READY worker, 1
otherwise, with the reason on stderr. The container's HEALTHCHECK and the Kubernetes readiness
probe (deploy/) run it inside the pod, so it works with token authorization on: it reads the keys
from the run folder's ``key_file.json`` and renews an expired one like every call of
:mod:`client.api`. (``/ping`` alone turns Healthy seconds before the workers can answer.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from client.api import Endpoints, ServingError, TorchServeClient


def problems(client: TorchServeClient) -> list[str]:
    """Why the server cannot answer predictions yet (empty when it can)."""
    status = client.ping().get("status")
    if status != "Healthy":
        return [f"/ping says {status!r}"]
    found = []
    for model in client.models():
        name = model["modelName"]
        workers = client.describe(name)[0]["workers"]
        if not any(worker["status"] == "READY" for worker in workers):
            found.append(f"{name}: no READY worker ({', '.join(w['status'] for w in workers) or 'none'})")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, help="TorchServe's run folder (RECOGNIZER_RUN_DIR, .run)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    args = parser.parse_args(argv)
    client = TorchServeClient(Endpoints.discover(run_dir=args.run_dir), timeout=args.timeout)
    try:
        found = problems(client)
    except (ServingError, OSError, ValueError, KeyError) as error:  # down, no key file yet, ...
        found = [f"{type(error).__name__}: {error}"]
    if found:
        sys.exit("not ready: " + "; ".join(found))


if __name__ == "__main__":
    main()
