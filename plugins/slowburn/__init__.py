"""slowburn: lead hygiene for Apache Airflow 3 (see README.md)."""
__version__ = "0.1.0"
