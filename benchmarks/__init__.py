"""``make bench``: what serving a drawing costs, measured against TorchServe's own floor.

- :mod:`benchmarks.handler_cost`: the handler's work in process, a request's stages (decode,
  normalize, forward, postprocess) and the whole request, per model and canvas style;
- :mod:`benchmarks.serving`: TorchServe end to end, against a no-op baseline in the same server
  and :mod:`benchmarks.flask_baseline` (a plain Flask + PyTorch app serving the same model file),
  plus cold start, memory and the workers x batch size sweep;
- :mod:`benchmarks.accuracy`: the shipped models' accuracy over HTTP against their model cards;
- :mod:`benchmarks.run`: the command (``python -m benchmarks``) that runs them all and writes
  ``benchmarks/results/latest.json``; :mod:`benchmarks.report` turns that into the README table.

How much each part measures is in ``config/benchmarks.yaml`` (profiles ``full`` and ``quick``).
"""
