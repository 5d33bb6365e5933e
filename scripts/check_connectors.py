#!/usr/bin/env python3
"""Dev aid: sanity-check the connector data under connectors/.

Usage:
    python3 scripts/check_connectors.py [CONNECTORS_DIR]     (default: connectors/ next to scripts/)

Checks, per connectors/<name>/connector.yaml:
  - only the documented connector.yaml keys are used, with allowed values;
  - every referenced file exists (OpenAPI documents, event schemas/examples, public key, scopes);
  - every *.json file in the connector parses;
  - OpenAPI documents: version 3.0.x, every local $ref resolves, operationIds present and unique per
    document, path templates match required path parameters, query parameters have a schema type;
  - OpenAPI request/response/parameter examples validate against their schemas (needs `jsonschema`);
  - event schemas are valid draft-07 JSON Schema and every example validates (needs `jsonschema`);
    extra sample payloads in webhooks/ are validated against the event they name.

Upstream documents that are vendored unchanged (VENDORED below) only get warnings for problems that
are theirs to fix (duplicate operationIds, examples that disagree with schemas).

Needs PyYAML (`pip install pyyaml`); `jsonschema` is optional. Exit status 0 = no errors.
"""
from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover
    print("check_connectors.py needs PyYAML: pip install pyyaml", file=sys.stderr)
    sys.exit(2)

try:
    import jsonschema
except ImportError:  # pragma: no cover
    jsonschema = None

# Connectors whose OpenAPI documents are copied byte-for-byte from the vendor.
VENDORED = {"ghl"}

TOP_KEYS = {"connector", "title", "description", "docs", "base_url", "apis", "auth", "headers",
            "pagination", "rate_limit", "retry_statuses", "idempotency_header", "error_message",
            "scopes", "webhooks"}
AUTH_KEYS = {"scheme", "header", "authorize_url", "token_url", "grant"}
AUTH_SCHEMES = {"none", "bearer", "basic", "header", "oauth2", "url"}
PAGINATION_KEYS = {"style", "limit", "offset", "page", "cursor", "max_limit", "items", "next"}
RATE_KEYS = {"requests", "per_seconds", "per_day"}
WEBHOOK_KEYS = {"content_type", "signature", "event_type", "event_id", "events"}
SIGNATURE_KEYS = {"scheme", "header", "encoding", "public_key", "timestamp_path"}
SIGNATURE_SCHEMES = {"none", "hmac-sha256", "hmac-sha1", "rsa-sha256", "shared-secret", "payhere-md5sig"}
EVENT_KEYS = {"description", "schema", "example"}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")


class Report:
    def __init__(self):
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    def warn(self, where, msg):
        self.warnings.append(f"{where}: {msg}")


# ----------------------------------------------------------------------------- helpers


def resolve_pointer(doc, ref: str):
    """Resolve a local JSON pointer (#/a/b); raise KeyError when it does not resolve."""
    if not ref.startswith("#"):
        raise KeyError(f"non-local $ref {ref}")
    node = doc
    for raw in ref[1:].split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(ref)
    return node


def walk_refs(node, path="#"):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield path, ref
        for k, v in node.items():
            yield from walk_refs(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_refs(v, f"{path}/{i}")


def simple_jsonpath(doc, path: str):
    """Evaluate $.a.b style paths (enough for event_type); None when absent or unsupported."""
    if not path.startswith("$"):
        return None
    node = doc
    for part in re.findall(r"\.([A-Za-z0-9_\-]+)|\['([^']+)'\]", path[1:]):
        key = part[0] or part[1]
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def openapi_to_json_schema(node):
    """OpenAPI 3.0 schema dialect -> draft-07 (nullable -> null type)."""
    if isinstance(node, list):
        return [openapi_to_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = out["enum"] + [None]
        elif "oneOf" in out:
            out["oneOf"] = out["oneOf"] + [{"type": "null"}]
        elif "anyOf" in out:
            out["anyOf"] = out["anyOf"] + [{"type": "null"}]
        elif "allOf" in out:
            out = {"anyOf": [{"allOf": out.pop("allOf")}, {"type": "null"}], **out}
    return out


def validation_errors(schema, instance, root=None):
    if jsonschema is None:
        return []
    if root is not None:
        schema = {"allOf": [schema], "components": root.get("components", {})}
    v = jsonschema.Draft7Validator(schema)
    try:
        return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:160]}"
                for e in v.iter_errors(instance)]
    except Exception as e:  # an unresolvable $ref, reported separately as well
        return [f"cannot validate: {type(e).__name__}: {str(e).splitlines()[0][:160]}"]


def load_json(path: Path, rep: Report, where):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        rep.error(where, f"missing file {path}")
    except json.JSONDecodeError as e:
        rep.error(where, f"{path}: invalid JSON: {e}")
    return None


def check_keys(obj, allowed, where, rep):
    if not isinstance(obj, dict):
        rep.error(where, "must be a mapping")
        return False
    for k in obj:
        if k not in allowed:
            rep.error(where, f"unknown key {k!r} (allowed: {', '.join(sorted(allowed))})")
    return True


# ----------------------------------------------------------------------------- OpenAPI


def check_openapi(doc, where, rep: Report, vendored: bool):
    soft = rep.warn if vendored else rep.error
    if not str(doc.get("openapi", "")).startswith("3.0"):
        rep.error(where, f"openapi version {doc.get('openapi')!r} is not 3.0.x")
    for p, ref in walk_refs(doc):
        try:
            resolve_pointer(doc, ref)
        except (KeyError, ValueError, IndexError):
            rep.error(where, f"$ref {ref} at {p} does not resolve")
    conv = openapi_to_json_schema(doc) if jsonschema else None
    seen: dict[str, str] = {}
    n_ops = 0
    for path, item in (doc.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method not in METHODS:
                continue
            n_ops += 1
            label = f"{where} {method.upper()} {path}"
            oid = op.get("operationId")
            if not oid:
                rep.error(label, "no operationId")
            elif oid in seen:
                soft(label, f"operationId {oid!r} also used by {seen[oid]}")
            else:
                seen[oid] = f"{method.upper()} {path}"
            if not vendored:
                if oid and not NAME_RE.match(oid):
                    rep.error(label, f"operationId {oid!r} is not kebab-case")
                if not op.get("summary"):
                    rep.error(label, "no summary")
            params = []
            for prm in shared + op.get("parameters", []):
                if "$ref" in prm:
                    try:
                        prm = resolve_pointer(doc, prm["$ref"])
                    except KeyError:
                        continue
                params.append(prm)
            declared_path = {p_["name"] for p_ in params if p_.get("in") == "path"}
            templated = set(re.findall(r"\{([^}]+)\}", path))
            for name in templated - declared_path:
                soft(label, f"path parameter {{{name}}} is not declared")
            for p_ in params:
                if p_.get("in") == "path" and p_.get("required") is not True:
                    soft(label, f"path parameter {p_.get('name')} must be required: true")
                if p_.get("in") == "query" and not vendored:
                    if not isinstance(p_.get("schema"), dict) or "type" not in p_["schema"]:
                        rep.error(label, f"query parameter {p_.get('name')} has no schema.type")
                if conv and "example" in p_ and isinstance(p_.get("schema"), dict):
                    for e in validation_errors(openapi_to_json_schema(p_["schema"]), p_["example"], conv):
                        soft(label, f"parameter {p_.get('name')} example: {e}")
            if not conv:
                continue
            bodies = []
            rb = op.get("requestBody") or {}
            if "$ref" in rb:
                rb = resolve_pointer(doc, rb["$ref"])
            for ctype, media in (rb.get("content") or {}).items():
                bodies.append((f"requestBody {ctype}", media))
            for status, resp in (op.get("responses") or {}).items():
                if "$ref" in resp:
                    resp = resolve_pointer(doc, resp["$ref"])
                for ctype, media in (resp.get("content") or {}).items():
                    bodies.append((f"response {status} {ctype}", media))
            for what, media in bodies:
                if "example" in media and "schema" in media:
                    for e in validation_errors(openapi_to_json_schema(media["schema"]), media["example"], conv):
                        soft(label, f"{what} example: {e}")
    return n_ops


# ----------------------------------------------------------------------------- connector


def check_connector(folder: Path, rep: Report):
    where = f"{folder.name}/connector.yaml"
    try:
        cfg = yaml.safe_load((folder / "connector.yaml").read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        rep.error(where, f"invalid YAML: {e}")
        return {}
    if not check_keys(cfg, TOP_KEYS, where, rep):
        return {}
    vendored = folder.name in VENDORED
    stats = {"apis": {}, "events": 0}

    for key in ("connector", "title", "description", "auth"):
        if key not in cfg:
            rep.error(where, f"missing required key {key!r}")
    name = cfg.get("connector", "")
    if not NAME_RE.match(str(name)):
        rep.error(where, f"connector name {name!r} must match [a-z][a-z0-9-]*")
    if name != folder.name:
        rep.error(where, f"connector name {name!r} differs from its folder {folder.name!r}")

    auth = cfg.get("auth") or {}
    if check_keys(auth, AUTH_KEYS, f"{where} auth", rep):
        scheme = auth.get("scheme")
        if scheme not in AUTH_SCHEMES:
            rep.error(where, f"auth.scheme {scheme!r} not in {sorted(AUTH_SCHEMES)}")
        if "header" in auth and scheme != "header":
            rep.error(where, "auth.header only goes with scheme header")
        for k in ("authorize_url", "token_url", "grant"):
            if k in auth and scheme != "oauth2":
                rep.error(where, f"auth.{k} only goes with scheme oauth2")
        if scheme == "oauth2":
            grant = auth.get("grant")
            if grant not in ("authorization_code", "client_credentials"):
                rep.error(where, f"auth.grant {grant!r} must be authorization_code or client_credentials")
            if "token_url" not in auth:
                rep.error(where, "oauth2 needs token_url")
            if grant == "authorization_code" and "authorize_url" not in auth:
                rep.error(where, "authorization_code needs authorize_url")

    for k, v in (cfg.get("headers") or {}).items():
        if not isinstance(v, str):
            rep.error(where, f"headers.{k} must be a string (quote it)")

    for i, rule in enumerate(cfg.get("pagination") or []):
        w = f"{where} pagination[{i}]"
        if not check_keys(rule, PAGINATION_KEYS, w, rep):
            continue
        style = rule.get("style")
        need = {"offset": ["limit", "offset"], "page": ["page"], "cursor": ["cursor"]}.get(style)
        if need is None:
            rep.error(w, f"style {style!r} not in offset|page|cursor")
            need = []
        for k in need + ["items"]:
            if k not in rule:
                rep.error(w, f"style {style} needs {k!r}")
        for k, only in (("offset", "offset"), ("page", "page"), ("cursor", "cursor")):
            if k in rule and style != only:
                rep.error(w, f"{k!r} only goes with style {only}")
        for k in ("items", "next"):
            if k in rule and not str(rule[k]).startswith("$"):
                rep.error(w, f"{k} must be a JSONPath starting with $")

    if "rate_limit" in cfg:
        check_keys(cfg["rate_limit"], RATE_KEYS, f"{where} rate_limit", rep)
    for s in cfg.get("retry_statuses") or []:
        if not isinstance(s, int) or not 100 <= s <= 599:
            rep.error(where, f"retry status {s!r} is not an HTTP status")

    # OpenAPI documents
    for api, rel in (cfg.get("apis") or {}).items():
        w = f"{folder.name}/{rel}"
        if not NAME_RE.match(api):
            rep.error(where, f"api name {api!r} must match [a-z][a-z0-9-]*")
        if not str(rel).endswith(".json"):
            rep.error(where, f"api {api}: OpenAPI documents must be JSON")
        doc = load_json(folder / rel, rep, w)
        if doc is not None:
            stats["apis"][api] = check_openapi(doc, w, rep, vendored)

    # scopes
    scopes = None
    if "scopes" in cfg:
        scopes = load_json(folder / cfg["scopes"], rep, where)
        if scopes is not None:
            for s in scopes.get("scopes", []):
                if set(s) != {"scope", "endpoints", "events", "access"}:
                    rep.error(where, f"scope entry {s.get('scope')!r} has keys {sorted(s)}")

    # webhooks
    wh = cfg.get("webhooks")
    if wh is not None and check_keys(wh, WEBHOOK_KEYS, f"{where} webhooks", rep):
        if wh.get("content_type") not in ("json", "form"):
            rep.error(where, "webhooks.content_type must be json or form")
        sig = wh.get("signature") or {}
        if check_keys(sig, SIGNATURE_KEYS, f"{where} webhooks.signature", rep):
            if sig.get("scheme") not in SIGNATURE_SCHEMES:
                rep.error(where, f"signature scheme {sig.get('scheme')!r} not in {sorted(SIGNATURE_SCHEMES)}")
            if sig.get("encoding") not in (None, "hex", "base64"):
                rep.error(where, "signature.encoding must be hex or base64")
            if sig.get("scheme") == "rsa-sha256":
                pem = folder / str(sig.get("public_key", ""))
                if not sig.get("public_key") or not pem.is_file():
                    rep.error(where, f"rsa-sha256 needs public_key, a file beside connector.yaml ({pem})")
                elif "BEGIN PUBLIC KEY" not in pem.read_text():
                    rep.error(where, f"{pem.name} is not a PEM public key")
            elif "public_key" in sig:
                rep.error(where, "public_key only goes with rsa-sha256")
            if sig.get("scheme") in ("hmac-sha256", "hmac-sha1", "rsa-sha256", "shared-secret") and not sig.get("header"):
                rep.error(where, f"signature scheme {sig.get('scheme')} needs a header")
        eid = wh.get("event_id")
        if eid is not None and (not isinstance(eid, dict) or len(set(eid) & {"header", "path"}) != 1 or set(eid) - {"header", "path"}):
            rep.error(where, "event_id must have exactly one of header or path")
        if not str(wh.get("event_type", "")).startswith("$"):
            rep.error(where, "webhooks.event_type must be a JSONPath")
        events = wh.get("events") or {}
        stats["events"] = len(events)
        schemas = {}
        referenced = set()
        for ev, spec in events.items():
            w = f"{folder.name} event {ev}"
            if not check_keys(spec, EVENT_KEYS, w, rep):
                continue
            if not spec.get("description"):
                rep.error(w, "no description")
            schema = example = None
            if "schema" in spec:
                referenced.add((folder / spec["schema"]).resolve())
                schema = load_json(folder / spec["schema"], rep, w)
            else:
                rep.error(w, "no schema")
            if "example" in spec:
                referenced.add((folder / spec["example"]).resolve())
                example = load_json(folder / spec["example"], rep, w)
            if schema is None:
                continue
            for p, ref in walk_refs(schema):
                try:
                    resolve_pointer(schema, ref)
                except (KeyError, ValueError, IndexError):
                    rep.error(w, f"$ref {ref} at {p} does not resolve")
            if jsonschema is not None:
                try:
                    jsonschema.Draft7Validator.check_schema(schema)
                except jsonschema.SchemaError as e:
                    rep.error(w, f"invalid JSON Schema: {e.message}")
                    continue
                schemas[ev] = schema
                if example is not None:
                    for e in validation_errors(schema, example):
                        rep.error(w, f"example does not validate: {e}")
        # extra sample payloads beside the declared examples
        for extra in sorted((folder / "webhooks").glob("*.json")) if (folder / "webhooks").is_dir() else []:
            if extra.name.endswith(".schema.json") or extra.resolve() in referenced:
                continue
            doc = load_json(extra, rep, f"{folder.name}/webhooks")
            ev = simple_jsonpath(doc, wh.get("event_type", "")) if isinstance(doc, dict) else None
            if isinstance(ev, str) and ev in schemas:
                for e in validation_errors(schemas[ev], doc):
                    rep.error(f"{folder.name}/webhooks/{extra.name}", f"does not validate as {ev}: {e}")
        if scopes is not None:
            for s in scopes.get("scopes", []):
                for ev in s.get("events", []):
                    if ev not in events:
                        rep.warn(where, f"scopes.json event {ev!r} ({s['scope']}) is not a declared event")

    # every JSON file parses
    for f in sorted(folder.rglob("*.json")):
        try:
            json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            rep.error(str(f.relative_to(folder.parent)), f"invalid JSON: {e}")
    return stats


def main(argv):
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "connectors"
    rep = Report()
    folders = sorted(p.parent for p in root.glob("*/connector.yaml"))
    if not folders:
        print(f"no connectors under {root}", file=sys.stderr)
        return 1
    for folder in folders:
        stats = check_connector(folder, rep)
        if stats:
            ops = ", ".join(f"{k} {v}" for k, v in stats["apis"].items()) or "no APIs"
            print(f"{folder.name}: {sum(stats['apis'].values())} operations ({ops}); {stats['events']} events")
    for w in rep.warnings:
        print(f"warning: {w}")
    for e in rep.errors:
        print(f"error: {e}")
    if jsonschema is None:
        print("note: jsonschema not installed; schemas and examples were not validated (pip install jsonschema)")
    print(f"{len(folders)} connectors, {len(rep.errors)} errors, {len(rep.warnings)} warnings")
    return 1 if rep.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
