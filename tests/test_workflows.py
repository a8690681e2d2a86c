"""Shared workflows keep working: every shipped workflow matches the nodes, and the nodes' interface only
grows in ways that old saved workflows survive.

The released interface is recorded in tests/data/node_interface.json. A change that renames, removes,
retypes or reorders an input, drops a combo choice or an output fails here. To record an intended,
compatible extension run: HYVD_UPDATE_NODE_INTERFACE=1 python -m pytest tests/test_workflows.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from workflow_format import (
    FRONTEND_ONLY,
    check_value,
    declared_inputs,
    is_widget,
    to_api_prompt,
    widget_values,
)

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
DATA = Path(__file__).parent / "data"
INTERFACE_FILE = DATA / "node_interface.json"
FILE_CHOICES = {("HunyuanDiffusersLoader", "model"), ("HunyuanDiffusersLoRA", "lora_name"), ("VAELoader", "vae_name"),
                ("LoadImage", "image"),
                *(("HunyuanDiffusersSingleFileLoader", name)
                  for name in ("transformer", "vae", "text_encoder", "clip", "model_folder", "clip_vision"))}
"""Lists of files on the machine."""
MODEL_FOLDERS = {"hunyuanvideo15_text_to_video": "HunyuanVideo-1.5-480p_t2v",
                 "hunyuanvideo15_image_to_video": "HunyuanVideo-1.5-480p_i2v",
                 "hunyuanvideo_image_to_video": "HunyuanVideo-I2V"}
"""The model folder each workflow expects (the others: HunyuanVideo)."""


def our_declarations(pack) -> dict:
    declarations = {}
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        declarations[name] = {
            "input": {kind: dict(inputs) for kind, inputs in cls.INPUT_TYPES().items()},
            "output": list(cls.RETURN_TYPES),
            "output_name": list(cls.RETURN_NAMES),
            "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", (False,) * len(cls.RETURN_TYPES))),
        }
    return declarations


@pytest.fixture(scope="module")
def declarations(pack):
    native = json.loads((DATA / "comfyui_native_nodes.json").read_text())["nodes"]
    return {**native, **our_declarations(pack)}


def test_there_are_the_promised_workflows():
    names = {path.stem for path in WORKFLOWS}
    assert names == {
        "hunyuanvideo_text_to_video",
        "hunyuanvideo_batch_prompts",
        "hunyuanvideo_low_vram",
        "hunyuanvideo_video_to_video",
        "hunyuanvideo_native_latent_and_decode",
        "hunyuanvideo_image_to_video",
        "hunyuanvideo_single_files_lora",
        "hunyuanvideo15_text_to_video",
        "hunyuanvideo15_image_to_video",
        "hunyuanvideo15_single_files",
    }


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_widgets_match_the_nodes(path, declarations):
    workflow = json.loads(path.read_text())
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        assert node["type"] in declarations, f"{path.name}: unknown node {node['type']}"
        for name, value in widget_values(node, declarations[node["type"]]).items():
            spec = dict((n, s) for n, s, _ in declared_inputs(declarations[node["type"]]))[name]
            if (node["type"], name) in FILE_CHOICES:
                assert isinstance(value, str) and value, f"{path.name}: {node['type']}.{name}"
                continue
            problem = check_value(name, spec, value)
            assert problem is None, f"{path.name}: {node['type']} {problem}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_links_match_the_sockets(path, declarations):
    workflow = json.loads(path.read_text())
    nodes = {node["id"]: node for node in workflow["nodes"]}
    for link_id, source, slot, target, target_slot, kind in workflow["links"]:
        assert declarations[nodes[source]["type"]]["output"][slot] == kind, f"{path.name}: link {link_id}"
        socket = nodes[target]["inputs"][target_slot]
        declared = dict((n, s) for n, s, _ in declared_inputs(declarations[nodes[target]["type"]]))
        assert declared[socket["name"]][0] == kind and socket["link"] == link_id, f"{path.name}: link {link_id}"
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        connected = {s["name"] for s in node.get("inputs", []) if s.get("link") is not None}
        for name, spec, required in declared_inputs(declarations[node["type"]]):
            if required and not is_widget(spec):
                assert name in connected, f"{path.name}: {node['type']}.{name} is not connected"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_converts_to_a_prompt_for_the_server(path, declarations):
    prompt = to_api_prompt(json.loads(path.read_text()), declarations)
    loaders = [n for n in prompt.values() if n["class_type"] == "HunyuanDiffusersLoader"]
    from_files = [n for n in prompt.values() if n["class_type"] == "HunyuanDiffusersSingleFileLoader"]
    if path.stem == "hunyuanvideo_single_files_lora":  # ComfyUI's files and tokenizers, no diffusers folder
        assert not loaders and [n["inputs"]["model_folder"] for n in from_files] == ["none"]
        assert isinstance(from_files[0]["inputs"]["loras"], list), "the LoRA node feeds the loader"
    elif path.stem == "hunyuanvideo15_single_files":  # every weight from a file, configs from the 1.5 folder
        assert not loaders and [n["inputs"]["model_folder"] for n in from_files] == ["HunyuanVideo-1.5-480p_t2v"]
        assert all(n["inputs"][c] != "from model folder" for n in from_files
                   for c in ("transformer", "vae", "text_encoder", "clip"))
    else:
        assert [n["inputs"]["model"] for n in loaders] == [MODEL_FOLDERS.get(path.stem, "HunyuanVideo")]


def interface(pack) -> dict:
    """Per node: its inputs (name, type, widget or socket, required) in order, combo choices, outputs."""
    result = {}
    for name, declaration in our_declarations(pack).items():
        inputs = []
        for input_name, spec, required in declared_inputs(declaration):
            kind = "COMBO" if isinstance(spec[0], list) else spec[0]
            entry = {"name": input_name, "type": kind, "widget": is_widget(spec), "required": required}
            if kind == "COMBO" and (name, input_name) not in FILE_CHOICES:
                entry["choices"] = list(spec[0])
            inputs.append(entry)
        outputs = [list(o) for o in zip(declaration["output"], declaration["output_name"], declaration["output_is_list"])]
        result[name] = {"inputs": inputs, "outputs": outputs}
    return result


def test_node_interface_only_grows_compatibly(pack):
    current = interface(pack)
    if os.environ.get("HYVD_UPDATE_NODE_INTERFACE"):
        INTERFACE_FILE.write_text(json.dumps(current, indent=1) + "\n")
    released = json.loads(INTERFACE_FILE.read_text())
    for node, old in released.items():
        assert node in current, f"node {node} was removed or renamed: saved workflows using it break"
        new = current[node]
        old_widgets = [i for i in old["inputs"] if i["widget"]]
        new_widgets = [i for i in new["inputs"] if i["widget"]]
        for before, after in zip(old_widgets, new_widgets + [None] * len(old_widgets)):
            assert after is not None and (before["name"], before["type"]) == (after["name"], after["type"]), (
                f"{node}: widget {before['name']} was renamed, removed, retyped or moved; saved workflows store "
                "widget values by position. Add new widgets after the existing ones."
            )
            assert set(before.get("choices", [])) <= set(after.get("choices", [])), f"{node}.{before['name']}: choice removed"
        new_sockets = {i["name"]: i for i in new["inputs"] if not i["widget"]}
        for socket in (i for i in old["inputs"] if not i["widget"]):
            assert socket["name"] in new_sockets and new_sockets[socket["name"]]["type"] == socket["type"], (
                f"{node}: input {socket['name']} was renamed, removed or retyped"
            )
        old_required = {i["name"] for i in old["inputs"] if not i["widget"] and i["required"]}
        new_required = {name for name, i in new_sockets.items() if i["required"]}
        assert new_required <= old_required, f"{node}: new required inputs {new_required - old_required} break old workflows"
        assert new["outputs"][: len(old["outputs"])] == old["outputs"], f"{node}: outputs changed"
