"""The HTTP side: the API, its schemas and OpenAPI document, probes, and the dashboard."""
