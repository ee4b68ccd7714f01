"""AWS Lambda mode: a thin handler over the shared pipeline (``handler.handler``)."""
