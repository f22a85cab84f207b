"""The Gradio app: draw a character (or upload an image), see what a recognizer reads; write a
number or a word on a wide pad and see the text read (``mode=text``) with each character's box;
and manage the served models.

    python -m client.app [--host 127.0.0.1] [--port 7860] [--run-dir .run]
                         [--inference-url URL] [--management-url URL] [--key-file PATH]

``make client`` runs it against the TorchServe of ``make serve``. Every call goes through
:class:`client.api.TorchServeClient` (URLs, keys, retry on a refused token); the Sketchpad's value
becomes request bytes in :mod:`client.sketch`, the model list comes from :mod:`client.catalog`,
and errors become sentences in :mod:`client.messages`, shown on the page instead of tracebacks.

Offline-safe: analytics off, no share link, no font or script from the internet; the page only
talks to this app, and the app only to the configured TorchServe.
"""

from __future__ import annotations

import os

# Before gradio is imported: otherwise it tries to reach its analytics servers.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from client.api import Endpoints, TorchServeClient
from client.catalog import (
    TABLE_HEADERS,
    parse_choice,
    pick,
    registered_versions,
    store_archives,
    table_rows,
    version_choices,
)
from client.messages import EXPLAINED, explain
from client.sketch import annotate, image_from_base64, sketch_image, sketch_to_png, upload_to_png

# The 28x28 glyph, shown four times larger as crisp pixels.
CSS = "#seen img { image-rendering: pixelated; object-fit: contain; width: 112px; height: 112px; }"


@dataclass(frozen=True)
class AppSettings:
    """Where the app listens, which TorchServe it calls and what it shows first."""

    endpoints: Endpoints
    host: str = "127.0.0.1"
    port: int = 7860
    model: str = "digits"  # preselected in the model picker (its default version)
    top_k: int = 3
    max_top_k: int = 10
    canvas_side: int = 400  # pixels of the square Sketchpad canvas
    text_canvas: tuple[int, int] = (1000, 300)  # the Read text tab's wide Sketchpad (width, height)
    brush_size: int = 16  # pen width in canvas pixels (the handler evens stroke widths anyway)
    scale_to: int = 2  # first value of the Models tab's Workers field (what serving.yaml runs)


class Recognizer:
    """The app's callbacks: each one calls TorchServe and returns values for the page, never
    raises (an error becomes a message on the page)."""

    def __init__(self, settings: AppSettings):
        self.settings = settings
        self.client = TorchServeClient(settings.endpoints)

    def failure(self, error: Exception) -> str:
        """The status line for an error: what went wrong and what to do (client.messages)."""
        return f"**Error:** {explain(error, self.settings.endpoints)}"

    # -- recognition -----------------------------------------------------------------------------

    def recognize(
        self, to_png: Callable[[Any], bytes], value: Any, choice: str | None, top_k: float
    ) -> tuple:
        """Ranking, confidence, glyph seen, round-trip time and a status line for one image."""
        try:
            image = to_png(value)
            model, version = parse_choice(choice or "")
            started = time.perf_counter()
            result = self.client.predict(model, image, version, int(top_k), return_input=True)
            elapsed_ms = (time.perf_counter() - started) * 1000.0
        except EXPLAINED as error:
            return (*self.cleared(), self.failure(error))
        ranking = {entry["label"]: entry["probability"] for entry in result["top_k"]}
        confidence = f"{result['confidence']:.1%}"
        status = f"{result['model']} {result['version']} reads **{result['label']}** ({confidence})"
        seen = image_from_base64(result["input"])
        return ranking, confidence, seen, f"{elapsed_ms:.0f} ms", status

    def recognize_drawing(self, sketch: dict | None, choice: str | None, top_k: float) -> tuple:
        return self.recognize(sketch_to_png, sketch, choice, top_k)

    def recognize_upload(self, image: Any, choice: str | None, top_k: float) -> tuple:
        return self.recognize(upload_to_png, image, choice, top_k)

    def read_text(self, sketch: dict | None, choice: str | None) -> tuple:
        """The text read on the wide pad (``mode=text``), the drawing with each character's box
        and label, the round-trip time and a status line."""
        try:
            image = sketch_image(sketch)
            png = sketch_to_png(sketch)
            model, version = parse_choice(choice or "")
            started = time.perf_counter()
            result = self.client.predict(model, png, version, mode="text")
            elapsed_ms = (time.perf_counter() - started) * 1000.0
        except EXPLAINED as error:
            return "", None, "", self.failure(error)
        count = len(result["characters"])
        status = (f"{result['model']} {result['version']} reads **{result['text']}** "
                  f"({count} characters, confidence {result['confidence']:.1%})")
        return result["text"], annotate(image, result["characters"]), f"{elapsed_ms:.0f} ms", status

    @staticmethod
    def cleared() -> tuple:
        """Empty ranking, confidence, glyph and time (the pad was cleared, or the call failed)."""
        return None, "", None, ""

    # -- models ----------------------------------------------------------------------------------

    def refresh(self, picked: str | None, managed: str | None, text_picked: str | None = None, done: str = "") -> tuple:
        """Models table, the model pickers (with the store's archives before the Read text tab's)
        and a status line, from the
        management API now (new registrations appear without restarting the app)."""
        archives = store_archives(self.settings.endpoints.model_store)
        try:
            versions = registered_versions(self.client)
        except EXPLAINED as error:
            message, versions = self.failure(error), []
        else:
            message = done or f"{len(versions)} model versions registered."
        choices = version_choices(versions)
        return (
            gr.Dataframe(value=table_rows(versions), headers=TABLE_HEADERS),
            gr.Dropdown(choices=choices, value=pick(versions, picked, self.settings.model)),
            gr.Dropdown(choices=choices, value=pick(versions, managed, self.settings.model)),
            gr.Dropdown(choices=archives, value=archives[0] if archives else None),
            gr.Dropdown(choices=choices, value=pick(versions, text_picked, self.settings.model)),
            message,
        )

    def manage(
        self, action: Callable[[], Any], done: str, picked: str | None, managed: str | None
    ) -> tuple:
        """Run one management ``action``, then refresh with ``done`` or the error."""
        try:
            action()
        except EXPLAINED as error:
            done = self.failure(error)
        return self.refresh(picked, managed, None, done)

    def scale(self, managed: str | None, workers: float | None, picked: str | None) -> tuple:
        def action() -> None:
            if workers is None or workers < 0:
                raise ValueError("enter how many workers the version should run (0 or more)")
            model, version = parse_choice(managed or "")
            self.client.scale(model, int(workers), version)

        done = f"{managed} now runs {int(workers or 0)} workers."
        return self.manage(action, done, picked, managed)

    def set_default(self, managed: str | None, picked: str | None) -> tuple:
        return self.manage(
            lambda: self.client.set_default(*parse_choice(managed or "")),
            f"{managed} is now the default version.", picked, managed,
        )

    def unregister(self, managed: str | None, picked: str | None) -> tuple:
        return self.manage(
            lambda: self.client.unregister(*parse_choice(managed or "")),
            f"{managed} is unregistered.", picked, managed,
        )

    def register(self, archive: str | None, picked: str | None, managed: str | None) -> tuple:
        def action() -> None:
            if not archive:
                raise ValueError("choose an archive of the model store (make archive builds them)")
            self.client.register(archive)

        return self.manage(action, f"{archive} is registered.", picked, managed)


def build_app(settings: AppSettings) -> gr.Blocks:
    """The page: a Recognize tab (Sketchpad or upload) and a Models tab."""
    recognizer = Recognizer(settings)
    side = settings.canvas_side
    pen = gr.Brush(default_size=settings.brush_size, colors=["#000000"], color_mode="fixed")
    with gr.Blocks(title="Handwriting recognizers", analytics_enabled=False) as app:
        gr.Markdown("# Handwriting recognizers\nDraw a digit or a letter, or upload an image.")
        with gr.Tab("Recognize"):
            with gr.Row():
                with gr.Column():
                    with gr.Tab("Draw"):
                        pad = gr.Sketchpad(
                            label="Sketchpad", canvas_size=(side, side), height=side + 120,
                            layers=False, brush=pen, elem_id="pad",
                        )
                        draw_button = gr.Button(
                            "Recognize drawing", variant="primary", elem_id="recognize-drawing"
                        )
                    with gr.Tab("Upload"):
                        upload = gr.Image(
                            label="Image", type="pil", image_mode=None,
                            sources=["upload", "clipboard"], elem_id="upload",
                        )
                        upload_button = gr.Button(
                            "Recognize image", variant="primary", elem_id="recognize-upload"
                        )
                    picker = gr.Dropdown(
                        label="Model version", choices=[], allow_custom_value=True, elem_id="model"
                    )
                    top_k = gr.Slider(
                        1, settings.max_top_k, value=settings.top_k, step=1, label="Top k"
                    )
                with gr.Column():
                    ranking = gr.Label(label="Ranking", elem_id="ranking")
                    confidence = gr.Textbox(
                        label="Confidence", interactive=False, elem_id="confidence"
                    )
                    seen = gr.Image(
                        label="What the model saw (28x28)", type="pil", interactive=False,
                        height=168, format="png", elem_id="seen",
                    )
                    round_trip = gr.Textbox(
                        label="Round trip", interactive=False, elem_id="round-trip"
                    )
                    status = gr.Markdown(elem_id="status")
        with gr.Tab("Read text"):
            width, height = settings.text_canvas
            with gr.Row():
                text_pad = gr.Sketchpad(
                    label="Write a number, a code or a word", canvas_size=(width, height),
                    height=height + 120, layers=False, brush=pen, elem_id="text-pad",
                )
            with gr.Row():
                text_picker = gr.Dropdown(
                    label="Model version", choices=[], allow_custom_value=True, elem_id="text-model"
                )
                text_button = gr.Button("Read text", variant="primary", elem_id="read-text")
            text_read = gr.Textbox(label="Text read", interactive=False, elem_id="text-read")
            text_boxes = gr.Image(
                label="Characters found", type="pil", interactive=False, format="png", elem_id="text-boxes"
            )
            text_time = gr.Textbox(label="Round trip", interactive=False, elem_id="text-round-trip")
            text_status = gr.Markdown(elem_id="text-status")
        with gr.Tab("Models"):
            table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="models-table")
            with gr.Row():
                managed = gr.Dropdown(
                    label="Model version", choices=[], allow_custom_value=True, elem_id="managed"
                )
                workers = gr.Number(
                    label="Workers", value=settings.scale_to, minimum=0, precision=0
                )
                scale_button = gr.Button("Scale workers")
                default_button = gr.Button("Set as default")
                unregister_button = gr.Button("Unregister", variant="stop")
            with gr.Row():
                archive = gr.Dropdown(
                    label="Archive in the model store", choices=[], allow_custom_value=True
                )
                register_button = gr.Button("Register")
                refresh_button = gr.Button("Refresh")
            models_status = gr.Markdown(elem_id="models-status")

        results = [ranking, confidence, seen, round_trip, status]
        draw_button.click(
            recognizer.recognize_drawing, [pad, picker, top_k], results,
            api_name="recognize_drawing",
        )
        upload_button.click(
            recognizer.recognize_upload, [upload, picker, top_k], results,
            api_name="recognize_upload",
        )
        for source in (pad, upload):
            source.clear(
                lambda: (*Recognizer.cleared(), ""), None, results, api_visibility="private"
            )

        text_results = [text_read, text_boxes, text_time, text_status]
        text_button.click(recognizer.read_text, [text_pad, text_picker], text_results, api_name="read_text")
        text_pad.clear(lambda: ("", None, "", ""), None, text_results, api_visibility="private")

        models = [table, picker, managed, archive, text_picker, models_status]
        pickers = [picker, managed, text_picker]
        app.load(recognizer.refresh, pickers, models, api_name="refresh_models")
        refresh_button.click(recognizer.refresh, pickers, models, api_visibility="private")
        scale_button.click(recognizer.scale, [managed, workers, picker], models, api_name="scale")
        default_button.click(
            recognizer.set_default, [managed, picker], models, api_name="set_default"
        )
        unregister_button.click(
            recognizer.unregister, [managed, picker], models, api_name="unregister"
        )
        register_button.click(
            recognizer.register, [archive, picker, managed], models, api_name="register"
        )
    return app


def launch(settings: AppSettings, block: bool = True) -> gr.Blocks:
    """Start the app on ``settings.host:port``; never with a share link. ``block=False`` returns
    at once (the tests run the app in-process)."""
    app = build_app(settings)
    app.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=False,
        prevent_thread_lock=not block,
        quiet=True,  # Gradio's banner suggests share=True; main() says where the app is instead
        footer_links=[],
        css=CSS,
    )
    return app


def parse_settings(argv: list[str] | None = None) -> AppSettings:
    """Flags first, then environment variables, then the run folder of ``make serve``."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m client.app", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (GRADIO_SERVER_NAME; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")),
                        help="port to listen on (GRADIO_SERVER_PORT; default 7860)")
    parser.add_argument("--run-dir", type=Path,
                        help="the server's run folder (RECOGNIZER_RUN_DIR; default .run)")
    parser.add_argument("--inference-url",
                        help="RECOGNIZER_INFERENCE_URL; default: from the run folder")
    parser.add_argument("--management-url",
                        help="RECOGNIZER_MANAGEMENT_URL; default: from the run folder")
    parser.add_argument("--key-file", type=Path,
                        help="RECOGNIZER_KEY_FILE; default: <run folder>/key_file.json")
    parser.add_argument("--model-store", type=Path,
                        help="archives the Models tab offers to register; default: the server's")
    parser.add_argument("--model", default=AppSettings.model,
                        help="model preselected (default digits)")
    args = parser.parse_args(argv)
    endpoints = Endpoints.discover(
        run_dir=args.run_dir, inference=args.inference_url,
        management=args.management_url, key_file=args.key_file,
    )
    if args.model_store:
        endpoints = dataclasses.replace(endpoints, model_store=args.model_store)
    return AppSettings(endpoints=endpoints, host=args.host, port=args.port, model=args.model)


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    endpoints = settings.endpoints
    print(
        f"Drawing app on http://{settings.host}:{settings.port} (Ctrl+C stops it), calling "
        f"TorchServe at {endpoints.inference} and {endpoints.management} with the keys of "
        f"{endpoints.key_file}",
        flush=True,
    )
    try:
        launch(settings)
    except OSError as error:  # the port is taken, the address is not this machine's, ...
        sys.exit(f"error: cannot listen on {settings.host}:{settings.port}: {error}")


if __name__ == "__main__":
    main()
