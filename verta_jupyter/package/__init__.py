"""The model package format: write / read / verify (`format`), rebuild a class from a package
(`load`), and export a package as an MLflow model (`mlflow_export`)."""
