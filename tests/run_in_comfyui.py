"""Runs the shipped example workflows, unchanged, on a running ComfyUI server (a developer check).

    python tests/run_in_comfyui.py --server http://127.0.0.1:8188 [--only text_to_video] [--timeout 1800]
        [--set HunyuanDiffusersSampler.steps=2 ...]

The server needs this pack in custom_nodes and, under models/diffusers, the folders the workflows name:
`HunyuanVideo`, `HunyuanVideo-I2V`, `HunyuanVideo-1.5-480p_t2v`, `HunyuanVideo-1.5-480p_i2v` (tiny ones:
`python -m hunyuan_core make-random-model ComfyUI/models/diffusers/NAME --family hunyuan-video[-i2v|-1.5|-1.5-i2v]`);
the native-decode workflow also needs models/vae/hunyuan_video_vae_bf16.safetensors, the image-to-video ones
ComfyUI's input/example.png.
Each workflow is converted with the server's own node declarations, queued, and waited for; the script
prints each result and exits non-zero if any failed. `--set TYPE.INPUT=VALUE` changes that widget value in
every node of that type (VALUE read as JSON, else as text), for a machine too slow for the shipped settings;
the line printed for each workflow names the values changed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

from workflow_format import to_api_prompt

REPO = Path(__file__).resolve().parents[1]


def _call(server: str, path: str, payload: dict | None = None) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(server + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
    return json.loads(body) if body else {}


def parse_setting(text: str) -> tuple[str, str, object]:
    """`TYPE.INPUT=VALUE` -> (node type, input name, value)."""
    target, _, raw = text.partition("=")
    node_type, _, name = target.partition(".")
    if not (node_type and name and raw):
        raise argparse.ArgumentTypeError(f"expected TYPE.INPUT=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return node_type, name, value


def apply_settings(prompt: dict, settings: list[tuple[str, str, object]]) -> list[str]:
    """Sets each widget value in every node of that type holding it; returns what changed."""
    changed = []
    for node_type, name, value in settings:
        for node in prompt.values():
            inputs = node["inputs"]
            if node["class_type"] == node_type and name in inputs and not isinstance(inputs[name], list):
                change = f"{node_type}.{name} {inputs[name]!r} -> {value!r}"
                if inputs[name] != value and change not in changed:
                    changed.append(change)
                inputs[name] = value
    return changed


def run(server: str, workflow: Path, declarations: dict, timeout: float,
        settings: list[tuple[str, str, object]] = ()) -> tuple[bool, str]:
    prompt = to_api_prompt(json.loads(workflow.read_text()), declarations)
    changed = apply_settings(prompt, settings)
    shipped = f"changed: {', '.join(changed)}; " if changed else "unchanged; "
    try:
        prompt_id = _call(server, "/prompt", {"prompt": prompt})["prompt_id"]
    except urllib.error.HTTPError as error:
        return False, f"{shipped}rejected: {error.read().decode()[:2000]}"
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        history = _call(server, f"/history/{prompt_id}").get(prompt_id)
        if history and history["status"].get("completed") is not None and history["status"]["status_str"] != "running":
            status = history["status"]
            if status["status_str"] == "success":
                outputs = {node: list(output) for node, output in history["outputs"].items()}
                return True, f"{shipped}success in {time.monotonic() - started:.0f} s, outputs {outputs}"
            errors = [m[1].get("exception_message", m[0]) for m in status.get("messages", []) if m[0] != "execution_start"]
            return False, f"{shipped}{status['status_str']}: {errors}"
        time.sleep(2)
    _call(server, "/interrupt", {})
    return False, f"{shipped}timed out after {timeout:.0f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8188")
    parser.add_argument("--only", nargs="*", help="workflow names (or parts of them) to run")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--set", type=parse_setting, action="append", default=[], metavar="TYPE.INPUT=VALUE",
                        help="change a widget value in every node of that type (repeatable)")
    args = parser.parse_args()
    declarations = _call(args.server, "/object_info")
    failed = 0
    for workflow in sorted((REPO / "example_workflows").glob("*.json")):
        if args.only and not any(part in workflow.stem for part in args.only):
            continue
        ok, message = run(args.server, workflow, declarations, args.timeout, args.set)
        failed += not ok
        print(f"{'ok ' if ok else 'FAIL'} {workflow.name}: {message}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
