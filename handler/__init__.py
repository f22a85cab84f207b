"""The recognizers' TorchServe handler (:mod:`handler.recognizer`) and what it imports."""

# What a worker writes to its standard error, before the reason, when the handler cannot start
# (TorchServe logs a worker's standard error in model_log.log): `make serve` (handler/server.py)
# watches for it, so a misconfiguration fails the start at once and says why.
START_FAILURE = "the recognizer handler cannot start"
