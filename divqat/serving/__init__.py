"""Serving a defended int8 model: the defense inside the ONNX file (:mod:`.export`), API keys,
budgets and per-key monitor state in a key store (:mod:`.keys`: SQLite for one machine,
PostgreSQL for many), the HTTP API (:mod:`.app`, Starlette on uvicorn: divqat's /v1 routes and
the Open Inference Protocol, :mod:`.v2`) and the black box that attacks a served model by URL
(:mod:`.http_blackbox`). Deployment: docs/deploy.md.

    divqat export --victim DIR --defense dcp --defense-arg beta=0.5 --out model.onnx
    divqat keys add alice --db keys.db --budget 10000 --rate 20
    divqat serve --victim model.onnx --db keys.db --port 8000
    divqat attack --victim http://127.0.0.1:8000 --api-key TOKEN --eval-victim DIR ...

The web stack (starlette, uvicorn, httpx, orjson) is the ``serve`` extra, psycopg and its pool the
``postgres`` extra: ``pip install divqat[serve,postgres]``.
"""
