"""Which crate features differ between `cargo run -p train` and `cargo test` (the workspace with its
dev-dependencies). Each difference makes Cargo compile burn twice; crates/model/Cargo.toml pins them.
Prints one line per (crate, host|target) that differs; nothing when the two builds are shared.

    python3 scripts/feature_pins.py
"""

import re
import subprocess


def features(args):
    out = subprocess.run(
        ["cargo", "tree", *args, "-f", "{p} [{f}]", "--prefix", "depth", "--no-dedupe"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found, stack = {}, []
    for line in out.splitlines():
        m = re.match(r"(\d+)(.*)", line)
        if not m:
            continue
        depth, rest = int(m.group(1)), m.group(2).strip()
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if rest.startswith("["):
            continue
        host = (stack[-1][1] if stack else False) or "(proc-macro)" in rest
        p = re.match(r"(\S+ v\S+)(?: \(.*?\))*\s*\[(.*?)\]", rest)
        if p:
            key = (p.group(1), "host" if host else "target")
            found.setdefault(key, set()).update(f for f in p.group(2).split(",") if f)
        stack.append((depth, host))
    return found


def main():
    train = features(["-p", "train", "-e", "normal,build"])
    workspace = features(["--workspace", "-e", "normal,build,dev"])
    for key in sorted(train):
        if key in workspace and train[key] != workspace[key]:
            print(f"{key[0]} ({key[1]}): test build adds {sorted(workspace[key] - train[key])}")


if __name__ == "__main__":
    main()
