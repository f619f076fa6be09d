"""Airflow adapters: the only modules in slowburn that import airflow."""
