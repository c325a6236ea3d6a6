"""The HTTP side: health, stats, metrics, login, docs — FastAPI on uvicorn."""
