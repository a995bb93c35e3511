"""Studies that compare methods over seeds and write a table, a record and a plot.

Each study is one function taking its options and an output folder (``run_semisup`` …) and
one ``landlearn experiment NAME`` command. Results are real runs on real data: the record
holds every run's row, the options and the machine, so a table can be re-made and checked.
"""

from landlearn.experiments.semisup import SemisupOptions, run_semisup

__all__ = ["SemisupOptions", "run_semisup"]
