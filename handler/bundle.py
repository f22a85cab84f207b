"""The archives and configuration a cluster serves: ``python -m handler.bundle digits letters
balanced --model-store model_store --out build/kserve-bundle`` (``make kserve-bundle``), or with
``--profile container`` what the container image holds (``make container-bundle``,
deploy/Dockerfile): the same layout, configured for a plain Deployment (:data:`CONTAINER_SETTINGS`).

Under an InferenceService's ``storageUri`` KServe expects::

    config/config.properties    TorchServe's configuration
    model-store/<name>.mar      the archives

and starts ``torchserve --start --model-store=/mnt/models/model-store
--ts-config=/mnt/models/config/config.properties`` with ``TS_SERVICE_ENVELOPE`` set to ``kserve``
(v1) or ``kservev2`` (v2), next to KServe's model server, which answers on port 8080 and calls
TorchServe on the pod's loopback interface. The bundle's ``config.properties`` is
``config/config.properties`` with what that setup needs (:data:`KSERVE_SETTINGS`) and a
``model_snapshot`` naming each model, its version, workers and batching, read from the archive
itself (its ``MANIFEST.json`` and ``model-config.yaml``), so the bundle serves what was archived.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

from handler.server import CONFIG, MODELS, render_properties, store_only_urls

MOUNT = "/mnt/models"  # where KServe's storage initializer puts the storageUri's files
CONTAINER_HOME = "/srv/recognizer"  # the image's WORKDIR (deploy/Dockerfile): TorchServe's run folder
KSERVE_SETTINGS = {
    # KServe's model server listens on 8080 in the same container and calls TorchServe here
    # (TorchServe's KServe wrapper reads these addresses from this file): loopback only.
    "inference_address": "http://127.0.0.1:8085",
    "management_address": "http://127.0.0.1:8085",
    # Prometheus scrapes the pod: the one port open beyond the pod, and it holds no model API.
    "metrics_address": "http://0.0.0.0:8082",
    # KServe's model server sends TorchServe no key (it checks readiness on the management API
    # without one), and each pod would have keys of its own: authentication is KServe's
    # (ingress, service mesh), and TorchServe is reachable from its own pod only.
    "disable_token_authorization": "true",
    # The models are the snapshot's; nothing registers others at run time.
    "enable_model_api": "false",
    # TS_SERVICE_ENVELOPE, which selects protocol v1 or v2, is read only with this on.
    "enable_envvars_config": "true",
    "model_store": f"{MOUNT}/model-store",
}
CONTAINER_SETTINGS = {
    # Predictions reach the pod on 8080 with the inference key, token authorization on.
    "inference_address": "http://0.0.0.0:8080",
    # The management API stays inside the pod: the health check and a version swap with
    # `kubectl exec ... python -m client models` use it; registration only from the model store.
    "management_address": "http://127.0.0.1:8081",
    "allowed_urls": store_only_urls(f"{CONTAINER_HOME}/model-store"),
    # Prometheus scrapes the pod.
    "metrics_address": "http://0.0.0.0:8082",
    # TS_* variables of the pod override this file (TS_INFERENCE_ADDRESS, TS_DISABLE_TOKEN_AUTHORIZATION,
    # ...; see docs/deploy.md), so one image serves every setup.
    "enable_envvars_config": "true",
    "model_store": f"{CONTAINER_HOME}/model-store",
}
PROFILES = {"kserve": KSERVE_SETTINGS, "container": CONTAINER_SETTINGS}
SNAPSHOT_SETTINGS = ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout")


def archive_settings(archive: Path) -> dict[str, Any]:
    """A ``.mar``'s name, version and serving settings (``MANIFEST.json``, ``model-config.yaml``)."""
    with zipfile.ZipFile(archive) as mar:
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]
        config = yaml.safe_load(mar.read(manifest["configFile"])) if "configFile" in manifest else {}
    return {"name": manifest["modelName"], "version": manifest["modelVersion"],
            **{key: config[key] for key in SNAPSHOT_SETTINGS if key in config}}


def model_snapshot(archives: list[Path], unbatched: bool = False) -> dict[str, Any]:
    """TorchServe's ``model_snapshot``: every archive as the default version of its model.
    ``unbatched`` (behind KServe's envelopes) refuses an archive that batches."""
    models: dict[str, Any] = {}
    for archive in archives:
        settings = archive_settings(archive)
        name, version = settings.pop("name"), settings.pop("version")
        if unbatched and settings.get("batchSize", 1) != 1:
            # KServe's envelopes read the first request of a batch only (pytorch/serve#1302).
            raise ValueError(f"{archive}: batchSize {settings['batchSize']} behind a KServe envelope "
                             "would leave requests unanswered; archive it with batchSize 1")
        models[name] = {version: {"defaultVersion": True, "marName": archive.name, **settings}}
    return {"name": "startup.cfg", "modelCount": len(models), "models": models}


def build_bundle(
    names: list[str], model_store: Path, out: Path, profile: str = "kserve", config: Path = CONFIG
) -> Path:
    """``out/config/config.properties`` and ``out/model-store/<name>.mar`` for each of ``names``,
    configured for ``profile`` (:data:`PROFILES`); anything else in ``out`` is removed first.
    Returns ``out``."""
    archives = [model_store / f"{name}.mar" for name in names]
    missing = [str(path) for path in archives if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"no archive {', '.join(missing)}: run make archive")
    shutil.rmtree(out, ignore_errors=True)
    (out / "model-store").mkdir(parents=True)
    (out / "config").mkdir()
    for archive in archives:
        shutil.copy2(archive, out / "model-store" / archive.name)
    snapshot = model_snapshot(archives, unbatched=profile == "kserve")
    settings = {**PROFILES[profile], "model_snapshot": json.dumps(snapshot, separators=(",", ":"))}
    header = (f"# Written by `python -m handler.bundle --profile {profile}` from {config.name}: its settings\n"
              f"# for this profile (handler/bundle.py) replace those below or are appended at the end.\n")
    (out / "config" / "config.properties").write_text(header + render_properties(config.read_text(), settings))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(MODELS), help="models (default: all three)")
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--out", type=Path, default=Path("build/kserve-bundle"))
    parser.add_argument("--profile", choices=sorted(PROFILES), default="kserve")
    args = parser.parse_args(argv)
    try:
        out = build_bundle(args.names, args.model_store, args.out, args.profile)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    where = "the InferenceService's storageUri" if args.profile == "kserve" else "docker build -f deploy/Dockerfile ."
    print(f"{out}: config/config.properties, model-store/ ({', '.join(args.names)}), for {where}")


if __name__ == "__main__":
    main()
