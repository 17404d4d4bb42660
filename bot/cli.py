"""The `bot` command: run, train, shell.

Wiring only: which processes the service has and how they find each other.
Process handling is in bot.supervisor, models in bot.training, the embedded
Redis in bot.redis_server.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from bot.privacy import install_log_masking
from bot.redis_server import (
    EmbeddedRedis,
    RedisUnavailable,
    free_port,
    mask_url,
    ping_url,
    release_conversation_locks,
)
from bot.settings import Settings, get_settings
from bot.supervisor import (
    ChildSpec,
    ReadyCheck,
    StartFailed,
    Supervisor,
    http_get,
    http_ready,
    json_has,
    make_private,
    port_is_free,
    shown_path,
)
from bot.training import (
    TrainingError,
    TrainingInterrupted,
    ensure_model,
    latest_model,
    model_is_current,
)
from connectors.credentials import credential_variables

REST_WEBHOOK = "/webhooks/rest/webhook"
REST_READY = "/webhooks/rest/ready"
# Every Python child masks personal data in what it logs (bot.privacy) from its
# first line on, before Rasa or rasa_sdk configure logging and create handlers.
_MASK_LOGS = "from bot.privacy import install_log_masking; install_log_masking(); "
# Rasa takes its API token only as a command-line argument, which every local
# user can read with `ps`. This stub hands it over through the environment.
_TOKEN_PLACEHOLDER = "@BOT_API_TOKEN"
# Before Rasa is imported, bot.lean_rasa keeps TensorFlow out if the model needs none;
# then, before Rasa builds its app, bot.rasa_auth makes it check the admin token in
# constant time and accept it in a header.
_RASA_WITH_ENV_TOKEN = (
    "import os, sys; "
    + _MASK_LOGS
    + f"sys.argv = ['rasa'] + [os.environ['BOT_API_TOKEN'] if a == {_TOKEN_PLACEHOLDER!r} else a "
    "for a in sys.argv[1:]]; "
    "from bot.lean_rasa import install; install(sys.argv); "
    "from bot import rasa_auth; rasa_auth.install(); "
    "from rasa.__main__ import main; main()"
)
# `python -m rasa_sdk`, masking its logs first.
_ACTION_SERVER = (
    "import sys; " + _MASK_LOGS + "sys.argv[0] = 'rasa_sdk'; "
    "from rasa_sdk.__main__ import main; main()"
)


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


# --- pieces -----------------------------------------------------------------------


def stored_secret(settings: Settings, env_name: str, filename: str) -> tuple[str, str]:
    """A secret and where it comes from (never the secret itself, in output).

    The environment wins; otherwise one is generated once into var/<filename>,
    so clients keep working across restarts.
    """
    if os.environ.get(env_name):
        return os.environ[env_name], env_name
    path = settings.var_dir / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once can't both write a secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        secret = path.read_text().strip()
        if not secret:
            raise CliError(f"{path} is empty; delete it to get a new secret") from None
        return secret, shown_path(path)
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    return secret, shown_path(path)


def api_token(settings: Settings) -> tuple[str, str]:
    """The admin token of Rasa's HTTP API (BOT_API_TOKEN, else var/api_token)."""
    if settings.api_token:
        return settings.api_token, "BOT_API_TOKEN"
    return stored_secret(settings, "BOT_API_TOKEN", "api_token")


def rest_token(settings: Settings, admin_token: str) -> tuple[str, str]:
    """The REST channel callers' token (BOT_REST_TOKEN, else var/rest_token).
    Never the admin token: a REST caller must not read transcripts or replace
    the model."""
    if settings.rest_token:
        token, source = settings.rest_token, "BOT_REST_TOKEN"
    else:
        token, source = stored_secret(settings, "BOT_REST_TOKEN", "rest_token")
    if token == admin_token:
        raise CliError(
            f"the REST token ({source}) is the admin token of Rasa's HTTP API; give the REST "
            "channel's callers a token of their own (BOT_REST_TOKEN)"
        )
    return token, source


def channel_env(settings: Settings, token: str) -> dict[str, str]:
    """A value for every ${VAR} in credentials.yml: the environment's, else empty
    (that part off), else for the visitor-token secret one kept under var/.
    With the demo logins on and no WEB_IDENTITY_SECRET, the host-user secret is
    one kept under var/ too: the demo page's logins need it, and no host site
    knows it, so nothing but those logins can use it."""
    names = credential_variables(settings.root / "credentials.yml")
    env = {name: os.environ.get(name, "") for name in names}
    env["WEB_VISITOR_SECRET"], _ = stored_secret(settings, "WEB_VISITOR_SECRET", "web_secret")
    env["DEMO_LOGINS"] = "1" if settings.demo_logins else "0"  # as settings read it
    if settings.demo_logins and not env.get("WEB_IDENTITY_SECRET"):
        env["WEB_IDENTITY_SECRET"], _ = stored_secret(
            settings, "WEB_IDENTITY_SECRET", "web_identity_secret"
        )
    env["BOT_API_TOKEN"] = token
    env["BOT_REST_TOKEN"], _ = rest_token(settings, token)
    return env


def redis_port() -> int:
    # Not in Settings: only the embedded Redis uses it.
    raw = os.environ.get("BOT_REDIS_PORT")
    if not raw:
        return free_port()
    try:
        return int(raw)
    except ValueError:
        raise CliError(f"BOT_REDIS_PORT must be a whole number, got {raw!r}") from None


@dataclass
class RedisPlan:
    url: str
    spec: ChildSpec | None  # None: an external Redis (REDIS_URL)
    guard: AbstractContextManager[None]  # held while the service runs
    description: str


def plan_redis(settings: Settings) -> RedisPlan:
    if settings.redis_url:
        ping_url(settings.redis_url)
        return RedisPlan(settings.redis_url, None, nullcontext(), "REDIS_URL")
    data_dir = settings.var_dir / "redis"
    embedded = EmbeddedRedis(data_dir, redis_port())
    return RedisPlan(
        embedded.url,
        embedded.child_spec(),
        embedded.lock(),
        f"embedded, data in {shown_path(data_dir)}",
    )


def _redis_url_path(settings: Settings) -> Path:
    return settings.var_dir / "run" / "redis_url"


@contextmanager
def redis_url_file(settings: Settings, url: str) -> Iterator[None]:
    """Tell other commands (`bot push`) where this run's Redis is: the embedded
    one listens on a port chosen at start."""
    path = _redis_url_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(url + "\n")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def running_redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    path = _redis_url_path(settings)
    if not path.is_file():
        raise CliError("the bot is not running (no REDIS_URL and no var/run/redis_url)")
    return path.read_text().strip()


def child_env(settings: Settings, redis_url: str) -> dict[str, str]:
    """What every child gets on top of our environment."""
    return {
        "REDIS_URL": redis_url,
        "TRACKER_DATABASE_URL": settings.tracker_db_url,
        # The shop's database, as prepare_database() left it (the actions use it).
        "DATABASE_URL": settings.database_url,
        "ACTION_ENDPOINT_URL": settings.action_endpoint_url,
        "RASA_TELEMETRY_ENABLED": "false",
        # Logs reach var/log/ as they happen, not when a buffer fills.
        "PYTHONUNBUFFERED": "1",
    }


def action_server_spec(settings: Settings, env: dict[str, str]) -> ChildSpec:
    port = settings.action_port
    return ChildSpec(
        name="actions",
        argv=[sys.executable, "-c", _ACTION_SERVER, "--actions", "actions", "--port", str(port)],
        # rasa_sdk binds 0.0.0.0 unless SANIC_HOST says otherwise; only Rasa calls it.
        # Rasa opens a connection per action call; when its event loop is busy
        # (model inference under load) the request can follow seconds later, and
        # Sanic's default 5 s idle timeout would close the connection first: the
        # action's events would be lost mid-turn (seen: a form that never started).
        env={**env, "SANIC_HOST": "127.0.0.1", "SANIC_KEEP_ALIVE_TIMEOUT": "120"},
        cwd=settings.root,
        ready=http_ready(f"http://127.0.0.1:{port}/health"),
        ready_timeout=120.0,
    )


def _local(host: str) -> str:
    """Where to connect to a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _optional_files(root: Path, **flags: str) -> list[str]:
    # Passed only when present, so a missing file isn't a confusing Rasa error.
    found: list[str] = []
    for flag, name in flags.items():
        if (root / name).is_file():
            found += [f"--{flag}", name]
    return found


def rasa_ready(status_url: str, token: str | None = None) -> ReadyCheck:
    """Ready when /status names the loaded model (or, with the HTTP API off,
    the REST channel's /ready says one is loaded).

    Rasa opens its port only after trying to load the model, and keeps
    running without one if that failed: then any answer but 200 is final.
    """
    has_model = json_has("model_file" if token else "model_loaded")
    # In a header: a token in a URL ends up in access logs.
    headers = {"Authorization": f"Bearer {token}"} if token else None

    def check() -> bool:
        answer = http_get(status_url, headers)
        if answer is None:
            return False
        status, body = answer
        if status == 200 and has_model(body):
            return True
        if status == 401:
            raise StartFailed("Rasa rejected the API token")
        raise StartFailed(f"Rasa is up without a model (GET /status: HTTP {status})")

    return check


def _one_blas_thread() -> dict[str, str]:
    """A serving process multiplies one message's small matrices at a time: a
    second BLAS thread has nothing to share, and OpenBLAS's idle threads spin
    (sched_yield) on the other core between calls, ~60 % of a core taken from
    the customers' other work (perf, bench/latency.py). Training keeps them.
    An operator's own setting wins."""
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    return {name: os.environ.get(name) or "1" for name in names}


def rasa_server_spec(settings: Settings, model: Path, token: str, env: dict[str, str]) -> ChildSpec:
    port = settings.rasa_port
    base_url = f"http://{_local(settings.host)}:{port}"
    argv = [sys.executable, "-c", _RASA_WITH_ENV_TOKEN, "run"]
    if settings.admin_api:
        argv += ["--enable-api", "--auth-token", _TOKEN_PLACEHOLDER]
        ready = rasa_ready(f"{base_url}/status", token)
    else:
        ready = rasa_ready(f"{base_url}{REST_READY}")
    argv += ["-i", settings.host, "-p", str(port), "--model", str(model)]
    argv += _optional_files(settings.root, endpoints="endpoints.yml", credentials="credentials.yml")
    return ChildSpec(
        name="rasa",
        argv=argv,
        # SANIC_REQUEST_MAX_SIZE: Sanic reads it when Rasa creates the app; bodies
        # above it are refused (413) before they are read (its default: 100 MB).
        env={**env, "BOT_API_TOKEN": token,
             "SANIC_REQUEST_MAX_SIZE": str(settings.max_request_bytes),
             **_one_blas_thread()},
        cwd=settings.root,
        ready=ready,
        ready_timeout=600.0,
        waiting="loading the model, usually 20–70 s",
    )


def desk_spec(settings: Settings, token: str, env: dict[str, str]) -> ChildSpec:
    """The agent desk (bot.desk): after Rasa, whose API it uses."""
    rasa_url = f"http://{_local(settings.host)}:{settings.rasa_port}"
    return ChildSpec(
        name="desk",
        argv=[sys.executable, "-m", "bot.desk"],
        env={**env, "BOT_API_TOKEN": token, "BOT_RASA_URL": rasa_url,
             "BOT_DESK_PORT": str(settings.desk_port)},
        cwd=settings.root,
        ready=http_ready(f"http://{_local(settings.host)}:{settings.desk_port}/desk/health"),
        ready_timeout=60.0,
    )


def rasa_shell_spec(settings: Settings, model: Path, env: dict[str, str]) -> ChildSpec:
    argv = [sys.executable, "-c", _RASA_WITH_ENV_TOKEN, "shell", "--model", str(model)]
    # Its own server on a free loopback port: a running `bot run` keeps 5005.
    argv += ["-i", "127.0.0.1", "-p", str(free_port())]
    argv += _optional_files(settings.root, endpoints="endpoints.yml")
    return ChildSpec(
        name="shell",
        argv=argv,
        env=env,
        cwd=settings.root,
        foreground=True,
    )


def check_ports(wanted: Sequence[tuple[str, str, int]]) -> None:
    """Fail now, not after a minute of model loading, and never talk to a stranger
    that happens to answer our readiness check."""
    for what, host, port in wanted:
        if not port_is_free(host, port):
            raise CliError(f"{host}:{port} ({what}) is already in use; is the bot already running?")


def model_for(args: argparse.Namespace, settings: Settings) -> Path:
    if args.model:
        model = Path(args.model)
        if model.is_dir():
            found = latest_model(model)
            if found is None:
                raise CliError(f"no *.tar.gz model in {model}")
            return found.resolve()
        if not model.is_file():
            raise CliError(f"model not found: {model}")
        return model.resolve()
    if args.no_train:
        found = latest_model(settings.models_dir)
        if found is None:
            raise CliError(
                f"no model in {shown_path(settings.models_dir)}; "
                "run `bot train` (or drop --no-train)"
            )
        if not model_is_current(settings.root, found):
            print(f"note: {found.name} may be older than the training data (--no-train)")
        return found
    return ensure_model(settings.root, settings.models_dir, _train_log(settings), sys.stdout)


def _train_log(settings: Settings) -> Path:
    return settings.var_dir / "log" / "train.log"


def _log_dir(settings: Settings) -> Path:
    return settings.var_dir / "log"


# --- commands ------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    settings = get_settings()
    log = _train_log(settings)
    ensure_model(settings.root, settings.models_dir, log, sys.stdout, force=args.force)
    return 0


_ACTION_PORT = "action server, BOT_ACTION_PORT"


def wechat_mode() -> str:
    """WeChat's message-encryption mode as the channel will read it (a bad one
    fails here, before anything starts, rather than in the Rasa server)."""
    from connectors.wechat.modes import encryption_mode

    try:
        return encryption_mode(
            os.environ.get("WECHAT_ENCRYPTION_MODE"), os.environ.get("WECHAT_ENCODING_AES_KEY")
        )
    except ValueError as error:
        raise CliError(str(error)) from None


def wechat_status(rasa_url: str) -> str:
    mode = wechat_mode()
    missing = [n for n in ("WECHAT_TOKEN", "WECHAT_APP_ID", "WECHAT_APP_SECRET")
               if not os.environ.get(n)]
    if missing:
        return f"off (set {', '.join(missing)})"
    return f"{rasa_url}/webhooks/wechat/webhook ({mode} mode)"


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """A database that can't be reached or migrated is a message, not a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (SQLAlchemyError, OSError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise CliError(f"the shop database {mask_url(url)} can't be used: {reason}") from error


def prepare_database(settings: Settings) -> str:
    """Bring the shop's schema up to date and seed an empty database with the
    demo data; a line for the summary."""
    from bot.shop import database, demo

    url = settings.database_url
    seeded = ""
    with database_errors(url), database.setup_lock(url):
        database.upgrade(url)
        if not database.has_customers(url):
            with database.session(url) as session:
                result = demo.seed(session)
            seeded = f", demo data seeded ({result.customers} customers, {result.orders} orders)"
    return f"{mask_url(url)} (schema {database.head_revision()}{seeded})"


def business_hours_line(settings: Settings) -> str:
    """Check business_hours.yml now (a bad file stops the start); a summary line."""
    import datetime as dt

    from bot.hours import BadBusinessHours, BusinessHours

    try:
        hours = BusinessHours.from_file(settings.business_hours_file)
    except BadBusinessHours as error:
        raise CliError(str(error)) from None
    now = dt.datetime.now(dt.timezone.utc)
    if hours.is_open(now):
        closes = hours.closes_at(now)
        return f"{hours.timezone.key}, open now (until {closes:%H:%M})" if closes else "open"
    opens = hours.next_opening(now)
    return f"{hours.timezone.key}, closed now" + (f" (opens {opens:%a %H:%M})" if opens else "")


DEMO_AGENTS = (
    # username, display name, role, groups
    ("demo-agent", "客服小青", "agent", ("general", "orders", "billing", "complaints")),
    ("demo-lead", "主管老王", "supervisor", ("general", "orders", "billing", "complaints")),
)


def desk_line(settings: Settings) -> str:
    """Who can log in to the desk, for the summary. With the demo logins on, two
    demo people exist (an agent and a supervisor) whose password is a secret
    kept under var/ (or DESK_DEMO_PASSWORD): a fresh install can try the desk."""
    from sqlalchemy import func, select

    from bot.desk import agents as people
    from bot.shop import database
    from bot.shop.schema import Agent

    url = settings.database_url
    if settings.demo_logins:
        password, source = stored_secret(settings, "DESK_DEMO_PASSWORD", "desk_demo_password")
        with database.session(url) as session:
            for username, name, role, groups in DEMO_AGENTS:
                try:
                    people.do_set_password(session, username, password)
                except people.AgentError:
                    people.do_add(session, username, password, name, role=role, groups=groups)
        names = " / ".join(u for u, *_ in DEMO_AGENTS)
        return f"demo logins {names}, password in {source}"
    with database.session(url) as session:
        count = session.scalar(select(func.count()).select_from(Agent).where(Agent.active == 1))
    if not count:
        return "no agents yet: `bot agents add <username> --name 小青`"
    return f"{count} agent{'s' if count != 1 else ''}"


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from bot.shop import database, demo

    settings = get_settings()
    url = settings.database_url
    with database_errors(url), database.setup_lock(url):
        if args.reset:
            database.downgrade(url, "base")
        database.upgrade(url)
        if database.has_customers(url):
            raise CliError(
                f"{mask_url(url)} already has customers; `bot seed-demo --reset` drops every "
                "shop table (customers, orders, tickets, audit records) and seeds again"
            )
        with database.session(url) as session:
            result = demo.seed(session, extra_customers=args.customers)
    print(
        f"seeded {mask_url(url)}: {result.customers} customers, {result.orders} orders, "
        f"{result.refunds} refunds, {result.tickets} tickets"
    )
    return 0


def read_password(args: argparse.Namespace) -> str:
    """From stdin with --password-stdin (scripts), else asked twice, not echoed."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise CliError("the two passwords differ")
    return first


def cmd_agents(args: argparse.Namespace) -> int:
    """Manage the desk's agents (bot.desk.agents) in the shop's database."""
    from bot.desk import agents
    from bot.shop import database

    url = get_settings().database_url
    with database_errors(url):
        with database.setup_lock(url):
            database.upgrade(url)
        try:
            with database.session(url) as session:
                if args.agents_command == "add":
                    from bot.desk.config import desk_config

                    known = desk_config().group_names
                    unknown = [g for g in agents.check_groups(args.groups.split(","))
                               if g not in known]
                    if unknown:
                        raise CliError(f"no group {', '.join(unknown)} in desk.yml "
                                       f"(groups: {', '.join(known)})")
                    password = read_password(args)
                    added = agents.do_add(
                        session, args.username, password, args.name, args.role,
                        args.groups.split(","), args.capacity,
                    )
                    print(f"added {added.role} {added.username} ({added.display_name})")
                elif args.agents_command == "passwd":
                    agents.do_set_password(session, args.username, read_password(args))
                    print(f"new password for {args.username}")
                elif args.agents_command == "disable":
                    agents.do_disable(session, args.username)
                    print(f"disabled {args.username}")
                else:
                    for a in agents.listing(session):
                        state = "" if a.active else "  (disabled)"
                        print(f"{a.username:<20} {a.role:<10} {a.display_name}  groups "
                              f"{','.join(a.groups) or '-'}  capacity {a.capacity}{state}")
        except agents.AgentError as error:
            raise CliError(str(error)) from None
    return 0


def cmd_codes(args: argparse.Namespace) -> int:
    """The latest one-time codes the development SMS sender 'sent'."""
    from bot.shop.notify import LogSender

    log = LogSender(get_settings().var_dir / "log" / "sms.log")
    sent = log.recent(args.count)
    if not sent:
        print(f"no messages in {shown_path(log.path)} (SMS_SENDER=log writes them there)")
    for message in sent:
        print(f"{message['at']}  to {message['to']}: {message['text']}")
    return 0


def any_origin_note() -> str:
    """A warning for the summary when any web page may open the widget's socket."""
    origins = [o.strip() for o in os.environ.get("WEB_ALLOWED_ORIGINS", "").split(",")]
    return "; ANY origin may open its socket (WEB_ALLOWED_ORIGINS=*)" if "*" in origins else ""


def cmd_run(args: argparse.Namespace) -> int:
    settings = get_settings()
    # Everything that can fail fast does, before minutes of training.
    shop_database = prepare_database(settings)
    hours = business_hours_line(settings)
    wechat_mode()
    redis = plan_redis(settings)
    with redis.guard, redis_url_file(settings, redis.url):
        check_ports(
            [
                (_ACTION_PORT, "127.0.0.1", settings.action_port),
                ("Rasa, BOT_RASA_PORT", settings.host, settings.rasa_port),
                ("desk, BOT_DESK_PORT", settings.host, settings.desk_port),
            ]
        )
        token, token_source = api_token(settings)
        _, rest_token_source = rest_token(settings, token)
        desk_people = desk_line(settings) if settings.admin_api else ""
        model = model_for(args, settings)
        env = child_env(settings, redis.url)
        children = [
            *([redis.spec] if redis.spec else []),
            action_server_spec(settings, env),
            rasa_server_spec(settings, model, token, {**env, **channel_env(settings, token)}),
            # The desk works through Rasa's HTTP API (transcripts, handing back).
            *([desk_spec(settings, token, {**env, **channel_env(settings, token)})]
              if settings.admin_api else []),
        ]
        # One that crashes is started again; the others reconnect to it meanwhile.
        children = [dataclasses.replace(spec, restart=True) for spec in children]
        if redis.spec:  # embedded: this run's Rasa is the only one taking its locks
            embedded_url = redis.url
            children = [
                dataclasses.replace(
                    spec, before_restart=lambda: release_conversation_locks(embedded_url))
                if spec.name == "rasa" else spec
                for spec in children
            ]

        def summary() -> None:
            rasa_url = f"http://{_local(settings.host)}:{settings.rasa_port}"
            bound = "" if settings.host == "127.0.0.1" else f" (bound to {settings.host})"
            demo_logins = (
                ", demo logins on: DEMO_LOGINS=0 turns them off" if settings.demo_logins else ""
            )
            rows = [
                ("Redis", f"{mask_url(redis.url)} ({redis.description})"),
                ("action server", settings.action_endpoint_url),
                ("Rasa", f"{rasa_url}{bound}, model {model.name}"),
                ("web widget", f"{rasa_url}/ (demo shop page{demo_logins}){any_origin_note()}"),
                ("WeChat", wechat_status(rasa_url)),
                ("app", f"POST {rasa_url}/webhooks/app/messages, WebSocket /webhooks/app/ws"
                 + ("" if os.environ.get("APP_JWT_KEY") else " (off: set APP_JWT_KEY)")),
                ("REST channel", f"POST {rasa_url}{REST_WEBHOOK} (Authorization: Bearer "
                 f"<token in {rest_token_source}>)"),
                ("agent desk", f"http://{_local(settings.host)}:{settings.desk_port}/desk/ "
                 f"({desk_people})" if settings.admin_api else "off (BOT_ADMIN_API=0)"),
                ("HTTP API", f"{rasa_url}/status, /conversations/... (admin token in "
                 f"{token_source}); not for the internet: README, Deployment"
                 if settings.admin_api else "off (BOT_ADMIN_API=0)"),
                ("tracker store", mask_url(settings.tracker_db_url)),
                ("shop database", shop_database),
                ("business hours", f"{hours} ({shown_path(settings.business_hours_file)})"),
                ("logs", f"{shown_path(_log_dir(settings))}/"),
            ]
            print("\nJade Mart bot is running (Ctrl-C to stop)")
            for label, value in rows:
                print(f"  {label:<14} {value}")
            sys.stdout.flush()

        return Supervisor(children, _log_dir(settings)).run(on_ready=summary)


def cmd_shell(args: argparse.Namespace) -> int:
    settings = get_settings()
    redis = plan_redis(settings)
    with redis.guard:
        check_ports([(_ACTION_PORT, "127.0.0.1", settings.action_port)])
        model = model_for(args, settings)
        env = child_env(settings, redis.url)
        children = [
            *([redis.spec] if redis.spec else []),
            action_server_spec(settings, env),
            rasa_shell_spec(settings, model, env),
        ]
        return Supervisor(children, _log_dir(settings)).run()


def cmd_push(args: argparse.Namespace) -> int:
    """Deliver a message to a customer through their channel, now."""
    import asyncio
    import json

    from connectors.push import Push, PushError

    settings = get_settings()
    if args.json:
        try:
            message = json.loads(args.json)
        except json.JSONDecodeError as error:
            raise CliError(f"--json is not valid JSON: {error}") from None
    elif args.text:
        message = {"text": args.text}
    else:
        raise CliError("give the TEXT to send or --json MESSAGE")
    os.environ["REDIS_URL"] = running_redis_url(settings)
    if settings.admin_api:
        # The running Rasa server keeps the transcript (connectors.push.Transcript).
        os.environ.setdefault(
            "BOT_RASA_URL", f"http://{_local(settings.host)}:{settings.rasa_port}"
        )
        os.environ["BOT_API_TOKEN"], _ = api_token(settings)
    if not os.environ.get("WEB_VISITOR_SECRET"):
        os.environ["WEB_VISITOR_SECRET"], _ = stored_secret(
            settings, "WEB_VISITOR_SECRET", "web_secret"
        )

    async def send() -> None:
        push = Push.from_credentials_file(settings.root / "credentials.yml")
        await push.send(args.conversation_id, message)

    try:
        asyncio.run(send())
    except (PushError, ValueError) as error:
        raise CliError(f"not delivered: {error}") from None
    print(f"delivered to {args.conversation_id}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Rasa's data validation; warnings fail it, except for responses our code uses."""
    import warnings

    from bot.validation import validate

    settings = get_settings()
    with warnings.catch_warnings():  # Rasa's imports warn about pkg_resources
        warnings.simplefilter("ignore")
        report = validate(settings.root)
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if report.accepted:
        print(
            "responses sent by custom actions or the dialogue policy (not by stories or "
            f"rules): {', '.join(sorted(set(report.accepted)))}"
        )
    if not report.ok:
        raise CliError("validation failed (see above)")
    print("domain, data and config are valid")
    return 0


def cmd_wechat_menu(args: argparse.Namespace) -> int:
    import warnings

    with warnings.catch_warnings():  # Rasa's imports warn about pkg_resources
        warnings.simplefilter("ignore", DeprecationWarning)
        from connectors.wechat.menu import MenuError, publish_menu

    root = get_settings().root
    try:
        print(publish_menu(Path(args.file), root / "credentials.yml", check_only=args.check))
    except MenuError as error:
        raise CliError(str(error)) from None
    return 0


# --- entry point ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bot", description="Jade Mart customer-service bot")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_options(command: argparse.ArgumentParser) -> None:
        group = command.add_mutually_exclusive_group()
        group.add_argument(
            "--no-train", action="store_true", help="use the latest model even if data changed"
        )
        group.add_argument("--model", metavar="PATH", help="use this model (file or directory)")

    run = commands.add_parser(
        "run", help="train if needed, then start Redis, the action server and Rasa"
    )
    model_options(run)
    run.set_defaults(func=cmd_run)

    train_cmd = commands.add_parser("train", help="train a model if the inputs changed")
    train_cmd.add_argument("--force", action="store_true", help="train even if nothing changed")
    train_cmd.set_defaults(func=cmd_train)

    shell = commands.add_parser("shell", help="talk to the bot in the terminal")
    model_options(shell)
    shell.set_defaults(func=cmd_shell)

    validate_cmd = commands.add_parser(
        "validate",
        help="check domain, data and config (rasa data validate, failing on warnings)",
    )
    validate_cmd.set_defaults(func=cmd_validate)

    menu = commands.add_parser(
        "wechat-menu", help="publish the WeChat Official Account menu from a YAML file"
    )
    menu.add_argument("--file", default="wechat_menu.yml", help="default: wechat_menu.yml")
    menu.add_argument("--check", action="store_true", help="only check the file, publish nothing")
    menu.set_defaults(func=cmd_wechat_menu)

    seed_cmd = commands.add_parser(
        "seed-demo", help="fill the shop database with demo customers and orders"
    )
    seed_cmd.add_argument(
        "--reset", action="store_true",
        help="drop every table of the shop and the desk first (loses all their data)"
    )
    seed_cmd.add_argument(
        "--customers", type=int, default=40, help="random customers besides the named demo ones"
    )
    seed_cmd.set_defaults(func=cmd_seed_demo)

    agents_cmd = commands.add_parser("agents", help="the desk's agents: add, list, passwd, disable")
    agent_commands = agents_cmd.add_subparsers(dest="agents_command", required=True)
    add = agent_commands.add_parser("add", help="add an agent (the password is asked for)")
    add.add_argument("username")
    add.add_argument("--name", required=True, help="display name customers see, e.g. 客服小青")
    add.add_argument("--role", default="agent", choices=["agent", "supervisor", "admin"])
    add.add_argument("--groups", default="general", help="comma-separated skill groups")
    add.add_argument("--capacity", type=int, default=5, help="chats at once (default 5)")
    passwd = agent_commands.add_parser("passwd", help="set an agent's password")
    passwd.add_argument("username")
    for sub in (add, passwd):
        sub.add_argument("--password-stdin", action="store_true",
                         help="read the password from the first line of stdin")
    disable = agent_commands.add_parser("disable", help="an agent can no longer log in")
    disable.add_argument("username")
    agent_commands.add_parser("list", help="everyone, without passwords")
    agents_cmd.set_defaults(func=cmd_agents)

    codes = commands.add_parser(
        "codes", help="show the one-time codes sent by SMS (development sender)"
    )
    codes.add_argument("--count", type=int, default=20, help="how many, newest last")
    codes.set_defaults(func=cmd_codes)

    push = commands.add_parser(
        "push", help="send a message to a customer now, through their channel"
    )
    push.add_argument("conversation_id", help="e.g. wechat:<OpenID>, web:v-<id>, app:<customer>")
    push.add_argument("text", nargs="?", help="the text to send")
    push.add_argument("--json", metavar="MESSAGE", help="a whole message as JSON")
    push.set_defaults(func=cmd_push)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Children inherit it; there is no network here and users expect it off.
    os.environ["RASA_TELEMETRY_ENABLED"] = "false"
    # var/ holds conversations (logs, databases), the Redis AOF with the WeChat
    # token and the secrets: readable by the service's user only, also what
    # libraries create there (SQLite, rotated logs) and what an older release left.
    os.umask(0o077)
    make_private(get_settings().var_dir)
    # The supervisor's own logging (migrations, libraries) is masked like its children's.
    install_log_masking()
    try:
        return int(args.func(args))
    except (TrainingInterrupted, KeyboardInterrupt):
        # KeyboardInterrupt: Ctrl-C between steps, before any child started.
        print("\nstopped")
        # `bot train` was asked for a model and has none; `run`/`shell` were told to stop.
        return 130 if args.command == "train" else 0
    except TrainingError as error:
        print(f"bot: {error}", file=sys.stderr)
        if error.log_tail:
            print(f"--- last {len(error.log_tail)} lines of the training log ---", file=sys.stderr)
            for line in error.log_tail:
                print(f"  {line}", file=sys.stderr)
            print("---", file=sys.stderr)
        return 1
    except (CliError, RedisUnavailable) as error:
        print(f"bot: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
