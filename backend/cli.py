"""The command line: ``confab serve``, ``confab migrate``, ``confab create-user``,
``confab deactivate-user``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from backend.settings import ConfigurationError, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="confab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="Run the server (uvicorn).")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--no-access-log", action="store_true",
                       help="Do not log each request (query-string secrets are masked anyway).")

    commands.add_parser("migrate", help="Apply pending database migrations.")

    create = commands.add_parser("create-user", help="Create a user of any role.")
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    create.add_argument("--role", choices=["user", "agent", "admin"], default="user")
    create.add_argument("--username")
    create.add_argument("--first-name", default="")
    create.add_argument("--last-name", default="")

    deactivate = commands.add_parser(
        "deactivate-user", help="Deactivate a user and revoke their sessions; the running "
        "nodes close their sockets within SESSION_RECHECK_SECONDS.")
    deactivate.add_argument("--email", required=True)

    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        import uvicorn

        from backend.compat import IncompatibleLibrary, check_all
        from backend.realtime.protocol import UVICORN_OPTIONS

        try:
            check_all()
        except IncompatibleLibrary as exc:
            print(f"confab: {exc}", file=sys.stderr)
            return 1

        if args.workers > 1 and not settings.redis_url:
            # Each worker is a node: without Redis they would not see each other's sockets.
            print("configuration error: --workers > 1 needs REDIS_URL (each worker is a node)",
                  file=sys.stderr)
            return 2

        from backend.observability.logs import configure_logging

        # Our format from uvicorn's first line on (log_config=None: uvicorn adds no handlers
        # of its own; each worker's app sets the same format again when it is created).
        configure_logging(json_lines=settings.production)
        uvicorn.run("backend.main:app", host=args.host, port=args.port, workers=args.workers,
                    access_log=not args.no_access_log, **UVICORN_OPTIONS)
        return 0
    if args.command == "migrate":
        from backend.storage.database import migrate

        asyncio.run(migrate(settings))
        print("migrations applied")
        return 0
    if args.command == "deactivate-user":
        return asyncio.run(_deactivate_user(settings, args.email))
    return asyncio.run(_create_user(settings, args))


async def _create_user(settings: Settings, args: argparse.Namespace) -> int:
    from backend.auth import passwords
    from backend.auth.accounts import create_user
    from backend.service.errors import ChatError
    from backend.storage.database import close_database, open_database
    from models import Role

    passwords.use(settings.password_hashing)
    await open_database(settings, apply_migrations=not settings.production)
    try:
        user = await create_user(args.email, args.password, role=Role(args.role),
                                 username=args.username, first_name=args.first_name,
                                 last_name=args.last_name)
    except ChatError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await close_database()
    print(f"created user {user.id} <{user.email}> with role {user.role}")
    return 0


async def _deactivate_user(settings: Settings, email: str) -> int:
    from backend.auth.accounts import deactivate_user
    from backend.auth.sessions import Sessions
    from backend.service.errors import ChatError
    from backend.storage.database import close_database, open_database

    await open_database(settings, apply_migrations=not settings.production)
    try:
        user = await deactivate_user(Sessions(), email)
    except ChatError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await close_database()
    print(f"deactivated user {user.id} <{user.email}>; every session of theirs revoked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
