"""The HTTP server: OpenAI-compatible endpoints in front of graphs (one graph per served model)."""
