"""Writes one section of bench/results/backend.md, keeping the other benchmark's section."""

from results_file import ResultsFile

RESULTS = ResultsFile(
    "backend",
    "Backend benchmarks",
    [
        "ingest",
        "ingest_node",
        "ingest_prefilled",
        "ingest_postgres",
        "singles",
        "singles_against",
        "queries",
        "queries_against_6543424",
        "queries_postgres",
        "class_queries",
        "class_queries_postgres",
        "import",
        "import_contents",
    ],
)
write_section = RESULTS.write_section
