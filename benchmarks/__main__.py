import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: the evaluation's progress bars

from benchmarks.run import main  # noqa: E402

main()
