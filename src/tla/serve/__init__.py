"""Policy server (FastAPI): `tla.serve.app.create_app` / `app_from_run`; the client is `tla.client`."""
