"""Runs the shipped example workflows, unchanged, on a running ComfyUI server (a developer check).

    python tests/run_in_comfyui.py --server http://127.0.0.1:8188 [--only text_to_video] [--timeout 1800]

The server needs this pack in custom_nodes and, under models/diffusers, the folders the workflows name:
`HunyuanVideo`, `HunyuanVideo-I2V`, `HunyuanVideo-1.5-480p_t2v`, `HunyuanVideo-1.5-480p_i2v` (tiny ones:
`python -m hunyuan_core make-random-model ComfyUI/models/diffusers/NAME --family hunyuan-video[-i2v|-1.5|-1.5-i2v]`);
the native-decode workflow also needs models/vae/hunyuan_video_vae_bf16.safetensors, the image-to-video ones
ComfyUI's input/example.png.
Each workflow is converted with the server's own node declarations, queued, and waited for; the script
prints each result and exits non-zero if any failed.
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


def run(server: str, workflow: Path, declarations: dict, timeout: float) -> tuple[bool, str]:
    prompt = to_api_prompt(json.loads(workflow.read_text()), declarations)
    try:
        prompt_id = _call(server, "/prompt", {"prompt": prompt})["prompt_id"]
    except urllib.error.HTTPError as error:
        return False, f"rejected: {error.read().decode()[:2000]}"
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        history = _call(server, f"/history/{prompt_id}").get(prompt_id)
        if history and history["status"].get("completed") is not None and history["status"]["status_str"] != "running":
            status = history["status"]
            if status["status_str"] == "success":
                outputs = {node: list(output) for node, output in history["outputs"].items()}
                return True, f"success in {time.monotonic() - started:.0f} s, outputs {outputs}"
            errors = [m[1].get("exception_message", m[0]) for m in status.get("messages", []) if m[0] != "execution_start"]
            return False, f"{status['status_str']}: {errors}"
        time.sleep(2)
    _call(server, "/interrupt", {})
    return False, f"timed out after {timeout:.0f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8188")
    parser.add_argument("--only", nargs="*", help="workflow names (or parts of them) to run")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    declarations = _call(args.server, "/object_info")
    failed = 0
    for workflow in sorted((REPO / "example_workflows").glob("*.json")):
        if args.only and not any(part in workflow.stem for part in args.only):
            continue
        ok, message = run(args.server, workflow, declarations, args.timeout)
        failed += not ok
        print(f"{'ok ' if ok else 'FAIL'} {workflow.name}: {message}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
