"""``divqat keys``: create, list and revoke API keys in a key store (a SQLite file, or a
PostgreSQL database given as a ``postgresql://`` URL).

    divqat keys add NAME --db FILE|URL --budget N [--rate R]   prints the token alone on its last line
    divqat keys list --db FILE|URL       with each key's monitors and alarms (divqat.detection.listing)
    divqat keys revoke NAME --db FILE|URL

The token is shown once; the store keeps only its SHA-256 (see :mod:`divqat.serving.keys`).
"""
__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="create a key and print its token")
    add.add_argument("name", metavar="NAME", help="the key's name (unique in the database)")
    add.add_argument("--budget", required=True, type=int, metavar="N", help="input rows the key may have answered")
    add.add_argument("--rate", type=float, metavar="R", help="requests per second (default: unlimited)")
    listing = sub.add_parser("list", help="every key with its count, budget and state")
    revoke = sub.add_parser("revoke", help="revoke a key (its count is kept)")
    revoke.add_argument("name", metavar="NAME", help="the name of the key to revoke")
    for p in (add, listing, revoke):
        p.add_argument("--db", required=True, metavar="FILE|URL",
                       help="the key store: a SQLite file, or postgresql://USER@HOST/DB")


def run(args):
    from divqat.detection.listing import monitor_lines
    from divqat.serving.key_stores import open_key_store
    from divqat.serving.keys import check_new_key

    if args.action == "add":
        check_new_key(args.name, args.budget, args.rate)
    store = open_key_store(args.db, create=args.action == "add")
    try:
        _act(store, args, monitor_lines)
    finally:
        store.close()
    return 0


def _act(store, args, monitor_lines):
    if args.action == "add":
        token = store.add(args.name, args.budget, args.rate)
        rate = "unlimited" if args.rate is None else f"{args.rate:g} requests/s"
        print(f"key {args.name!r}: budget {args.budget} rows, rate {rate}. Its token, shown only this once:")
        print(token)
    elif args.action == "revoke":
        store.revoke(args.name)
        print(f"key {args.name!r} revoked")
    else:
        print(f"{'name':<20} {'used':>10} {'budget':>10} {'left':>10} {'rate/s':>8}  state")
        for key in store.list():
            rate = "-" if key["rate"] is None else f"{key['rate']:g}"
            state = "revoked" if key["revoked"] else "active" if key["action"] is None else f"answers:{key['action']}"
            print(f"{key['name']:<20} {key['used']:>10} {key['budget']:>10} {key['left']:>10} {rate:>8}  {state}")
            for line in monitor_lines(store, key["id"]):
                print(line)
