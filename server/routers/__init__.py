"""One APIRouter per API; `server.app.create_app` includes them all."""
