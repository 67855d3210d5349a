"""Runs a command on a fresh pseudo-terminal, as a user at a terminal would.

Usage: pty_run.py <script-json> -- <command...>
The script is a list of steps: {"expect": "text"} waits for text on the
terminal, {"send": "text"} types it, {"signal": "SIGTERM"} signals the
command, {"probe": true} records whether the terminal is in raw mode now.
Prints one JSON object: exit code, terminal settings restored or not, the
raw-mode probes, and everything the command wrote.
"""
import json, os, pty, select, signal, subprocess, sys, termios, time

def main():
    sep = sys.argv.index("--")
    steps = json.loads(sys.argv[1])
    cmd = sys.argv[sep + 1:]
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=subprocess.PIPE, start_new_session=True)
    out = b""
    probes = []
    deadline = time.time() + 60

    def pump(timeout):
        nonlocal out
        r, _, _ = select.select([master], [], [], timeout)
        if r:
            try:
                out += os.read(master, 65536)
            except OSError:
                pass

    for step in steps:
        if "expect" in step:
            want = step["expect"].encode()
            while want not in out and time.time() < deadline and p.poll() is None:
                pump(0.1)
        elif "send" in step:
            os.write(master, step["send"].encode())
            time.sleep(step.get("pause", 0.05))
        elif "signal" in step:
            p.send_signal(getattr(signal, step["signal"]))
        elif "probe" in step:
            lflag = termios.tcgetattr(slave)[3]
            probes.append(not (lflag & (termios.ICANON | termios.ECHO | termios.ISIG)))
    while p.poll() is None and time.time() < deadline:
        pump(0.1)
    if p.poll() is None:
        p.kill()
    pump(0.2)
    after = termios.tcgetattr(slave)
    print(json.dumps({
        "code": p.wait(),
        "restored": before == after,
        "raw": probes,
        "output": out.decode(errors="replace"),
        "stderr": p.stderr.read().decode(errors="replace"),
    }))

main()
