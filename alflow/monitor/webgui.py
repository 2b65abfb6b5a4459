"""FireWorks' web GUI for an alflow store, with the alflow pages added.

``alflow webgui`` serves FireWorks' own Flask app (``fireworks.flask_site``)
on the store's LaunchPad, plus the pages of :mod:`alflow.monitor.pages` at
``/alflow``. Both read the store's server directly (see
:class:`alflow.monitor.live.LiveStore`) while ``alflow run`` writes to it, so
the GUI shows a running campaign live; it never writes anything.

It listens on 127.0.0.1 by default; any other address requires a username
and password (HTTP basic auth on every page, FireWorks' and alflow's).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

from alflow.errors import ConfigError
from alflow.monitor.live import LiveStore
from alflow.monitor.pages import FigureCache, VersionCache, blueprint, inject_nav
from alflow.workflow.views import fireworks_web_app

__all__ = ["GuiState", "check_bind", "create_app", "is_loopback", "make_server"]

log = logging.getLogger(__name__)


@dataclass
class GuiState:
    """What the alflow hooks of the app need (kept in ``app.extensions["alflow"]``).

    Attributes
    ----------
    live
        The store being shown.
    username, password
        Basic-auth credentials (both None: no authentication).
    refresh_s
        How often campaign pages poll for changes (seconds).
    figures
        Recently drawn PNGs.
    versions
        Each campaign's state fingerprint, shared by requests within a second.
    """

    live: LiveStore
    username: str | None = None
    password: str | None = None
    refresh_s: int = 5
    figures: FigureCache = field(default_factory=FigureCache)
    versions: VersionCache = field(default_factory=VersionCache)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, username: str | None, password: str | None) -> None:
    """Refuse to listen beyond this machine without credentials.

    Raises
    ------
    ConfigError
        Only one of username and password is given, or ``host`` is not a
        loopback address and credentials are missing.
    """
    if bool(username) != bool(password):
        raise ConfigError("give both --username and --password, or neither")
    if not is_loopback(host) and not (username and password):
        raise ConfigError(
            f"the web GUI would listen on {host}, beyond this machine: give --username and "
            "--password (or keep the default --host 127.0.0.1 and use an SSH tunnel)"
        )


def _authorized(state: GuiState, authorization: Any) -> bool:
    if state.username is None or state.password is None:
        return True
    if authorization is None or authorization.username is None:
        return False
    user_ok = hmac.compare_digest(authorization.username.encode(), state.username.encode())
    password_ok = hmac.compare_digest(
        (authorization.password or "").encode(), state.password.encode()
    )
    return user_ok and password_ok


def _install_hooks(app: Any) -> None:
    """Register the alflow blueprint and request hooks on the app (once per process)."""
    from flask import Response, g, request

    @app.before_request
    def _alflow_auth_and_view() -> Any:
        state: GuiState = app.extensions["alflow"]
        if not _authorized(state, request.authorization):
            return Response(
                "alflow web GUI: log in with the username and password it was started with",
                401,
                {"WWW-Authenticate": 'Basic realm="alflow"'},
            )
        view = state.live.current()
        app.lp = view.launchpad  # FireWorks' views read app.lp
        g.alflow_view = view
        return None

    @app.after_request
    def _alflow_nav(response: Any) -> Any:
        if (
            response.status_code == 200
            and response.mimetype == "text/html"
            and not response.direct_passthrough
        ):
            response.set_data(inject_nav(response.get_data()))
        return response

    app.register_blueprint(blueprint())


def create_app(
    live: LiveStore,
    *,
    username: str | None = None,
    password: str | None = None,
    refresh_s: int = 5,
) -> Any:
    """FireWorks' Flask app, configured for ``live`` and extended with the alflow pages.

    FireWorks' app is a module-level object: one store per process. Calling
    this again re-points the app (hooks are registered only once).

    Parameters
    ----------
    live
        The store to show.
    username, password
        HTTP basic-auth credentials for every page (both or neither).
    refresh_s
        How often campaign pages poll for changes (seconds).

    Returns
    -------
    flask.Flask
    """
    app = fireworks_web_app()
    app.config["WEBGUI_USERNAME"] = username
    app.config["WEBGUI_PASSWORD"] = password
    app.lp = live.current().launchpad
    first = "alflow" not in app.extensions
    app.extensions["alflow"] = GuiState(
        live=live, username=username, password=password, refresh_s=refresh_s
    )
    if first:
        _install_hooks(app)
    return app


def make_server(app: Any, host: str, port: int) -> Any:
    """A threaded WSGI server for ``app`` (port 0: any free port; see ``server_port``)."""
    from werkzeug.serving import make_server as werkzeug_server

    return werkzeug_server(host, port, app, threaded=True)
