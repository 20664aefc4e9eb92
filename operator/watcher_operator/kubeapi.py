"""A small generic REST layer over the `kubernetes` client's ApiClient.

The operator handles a dozen kinds (built-in and CRD-based) with the same five verbs, and needs the
server-side-apply content type, so it talks to the REST paths directly instead of through a typed API
class per kind. Auth, TLS and in-cluster/kubeconfig loading stay with the official client.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

FIELD_MANAGER = "watcher-operator"

# (apiVersion, kind) -> (plural, namespaced)
RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Event"): ("events", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("servicemonitors", True),
    ("monitoring.coreos.com/v1", "PrometheusRule"): ("prometheusrules", True),
    ("storage.k8s.io/v1", "StorageClass"): ("storageclasses", False),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("watcher.jcode.io/v1alpha1", "WatcherDeployment"): ("watcherdeployments", True),
}


@dataclass
class ApiError(Exception):
    status: int
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


def load_config(kubeconfig: str | None = None) -> k8s.ApiClient:
    """In-cluster credentials when running in a pod, else KUBECONFIG / ~/.kube/config."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig:
            raise k8s_config.ConfigException("explicit kubeconfig")
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return k8s.ApiClient(configuration)


def path_for(
    api_version: str, kind: str, namespace: str | None = None, name: str | None = None, subresource: str | None = None
) -> str:
    plural, namespaced = RESOURCES[(api_version, kind)]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name:
        base += f"/{name}"
    if subresource:
        base += f"/{subresource}"
    return base


class Kube:
    def __init__(self, api_client: k8s.ApiClient, field_manager: str = FIELD_MANAGER, timeout: float = 30):
        self.api = api_client
        self.field_manager = field_manager
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        params = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            resp = self.api.call_api(*params, _request_timeout=self.timeout)
        except ApiException as exc:
            raise _api_error(exc.status or 0, exc.reason or "", exc.body) from None
        data = resp.read()
        if resp.status >= 400:
            raise _api_error(resp.status, resp.reason or "", data)
        return json.loads(data) if data else None

    # --- verbs ----------------------------------------------------------------------------------------
    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
        try:
            return self.request("GET", path_for(api_version, kind, namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def list_objects(
        self, api_version: str, kind: str, namespace: str | None, *, field_selector: str | None = None
    ) -> list[dict]:
        query = [("fieldSelector", field_selector)] if field_selector else []
        return (self.request("GET", path_for(api_version, kind, namespace), query=query) or {}).get("items") or []

    def apply(self, obj: dict, *, force: bool = True) -> dict:
        """Server-side apply: we own exactly the fields we send; others' fields are left alone."""
        meta = obj["metadata"]
        path = path_for(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        query = [("fieldManager", self.field_manager)]
        if force:
            query.append(("force", "true"))
        return self.request("PATCH", path, query=query, body=obj, content_type="application/apply-patch+yaml")

    def merge_patch(
        self, api_version: str, kind: str, namespace: str | None, name: str, patch: dict, subresource: str | None = None
    ) -> dict:
        return self.request(
            "PATCH",
            path_for(api_version, kind, namespace, name, subresource),
            body=patch,
            content_type="application/merge-patch+json",
        )

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        try:
            self.request(
                "DELETE",
                path_for(api_version, kind, namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
            return True
        except ApiError as err:
            if err.status == 404:
                return False
            raise

    def crd_exists(self, name: str) -> bool:
        return self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name) is not None


def _api_error(status: int, reason: str, body: Any) -> ApiError:
    message = ""
    if body:
        try:
            message = json.loads(body).get("message", "")
        except (ValueError, AttributeError, TypeError):
            message = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    return ApiError(status, reason, message)
