"""What ``divqat keys list`` says of a key's monitors: the queries each has seen, its alarms and
the action in force (read from the key store; the client never sees any of it)."""
import time

from divqat.detection.codec import decode_state

__all__ = ["monitor_lines"]


def monitor_lines(store, key_id):
    """Indented lines for ``key_id``: one for its monitors, one per alarm; none if it has neither."""
    states = store.monitor_states(key_id)
    lines = []
    if states:
        seen = []
        for name in sorted(states):
            state = decode_state(states[name])
            seen.append(f"{name} {int(state['n'])} queries{' ALARM' if bool(state['alarmed']) else ''}")
        action = store.key_action(key_id)
        lines.append(f"    monitors: {', '.join(seen)}; action in force: {action or 'none'}")
    for alarm in store.alarms(key_id):
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(alarm["at"]))
        lines.append(f"    alarm {at} UTC {alarm['monitor']} ({alarm['action']}): {alarm['detail']}")
    return lines
