"""Apps layer: the model server (``seedline serve``), a FastAPI app on uvicorn.

Nothing here is imported by ``seedline --help``; the CLI imports ``seedline.serving.app``
only when a server starts.
"""
