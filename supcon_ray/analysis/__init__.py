"""The analysis: the report's numbers as one typed model, built once from trials and their study records,
between the statistics (:mod:`supcon_ray.stats`, which decide) and the writers (:mod:`supcon_ray.reporting`,
which format).

* :mod:`.model`: the frozen dataclasses (:class:`ReportNumbers` and its entries and answers) and the
  ``--json`` contract they write;
* :mod:`.records`: a study as the analysis reads it (:class:`StudyRecord`);
* :mod:`.units`: one unit per (study, factor, compared pair), before multiplicity;
* :mod:`.families`: the Holm families, one plan;
* :mod:`.answers`, :mod:`.across`, :mod:`.entries`: each question's answers, the factors pooled over
  studies, and the entries;
* :mod:`.build`: :func:`build_numbers`, the one builder;
* :mod:`.wording` and :mod:`.formatting`: every sentence and claim word, and the one number formatter.

Names are imported lazily (:mod:`supcon_ray.exports`); none imports torch.
"""

from supcon_ray.exports import exports

__all__ = [
    "AcrossEntry", "Agreement", "Analysis", "BeyondAnswer", "DropAnswer", "DropDifference", "FactorEntry",
    "Families", "Interval", "LossDrop", "LossSpread", "LossSummary", "Pair", "PooledEntry", "ReportNumbers",
    "SettingMean", "StudyAnalysis", "StudyRecord", "TestResult", "TheseAnswer", "ViewAnswer", "analyze_entries",
    "build_numbers", "clean_json", "default_baseline", "read_study_folders", "record_of", "table_record",
]
__getattr__, __dir__ = exports(__name__, {
    **{name: "model" for name in (
        "AcrossEntry", "Agreement", "BeyondAnswer", "DropAnswer", "DropDifference", "FactorEntry", "Interval",
        "LossDrop", "LossSpread", "LossSummary", "Pair", "PooledEntry", "ReportNumbers", "SettingMean",
        "StudyAnalysis", "TestResult", "TheseAnswer", "ViewAnswer", "clean_json")},
    "StudyRecord": "records", "record_of": "records", "table_record": "records",
    "Families": "families",
    "default_baseline": "units",
    "Analysis": "entries", "analyze_entries": "entries",
    "build_numbers": "build", "read_study_folders": "build",
})
