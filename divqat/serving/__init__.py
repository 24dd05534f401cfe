"""Serving a defended int8 model: the defense inside the ONNX file (:mod:`.export`), API keys
and budgets in SQLite (:mod:`.keys`), the HTTP API (:mod:`.app`, Starlette on uvicorn) and the
black box that attacks a served model by URL (:mod:`.http_blackbox`).

    divqat export --victim DIR --defense dcp --defense-arg beta=0.5 --out model.onnx
    divqat keys add alice --db keys.db --budget 10000 --rate 20
    divqat serve --victim model.onnx --db keys.db --port 8000
    divqat attack --victim http://127.0.0.1:8000 --api-key TOKEN --eval-victim DIR ...

The web stack (starlette, uvicorn, httpx) is the ``serve`` extra: ``pip install divqat[serve]``.
"""
