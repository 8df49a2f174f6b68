"""A small synchronous client for the admin API, one method per route.

Every failure is one exception, so a caller (the CLI, a script) catches exactly one thing:

    AdminAPIError
        status 0      the proxy could not be reached, or did not answer in time
        status 4xx/5xx  the API refused; `code` and `message` come from its
                        `{"error": {"message", "type", "code"}}` body, and
                        `refused` (id -> reason) from a refused bulk change

Methods return the API's JSON as plain dicts and lists: the API is the schema, and a second
copy of it in client-side classes would only drift.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, overload
from urllib.parse import quote

import httpx

Action = Literal["approve", "reject", "archive", "restore"]
TextFormat = Literal["markdown", "agents-md", "claude-md"]
ExportFormat = Literal["json", "markdown", "agents-md", "claude-md", "skill-md", "langfuse"]
TEXT_FORMATS = ("markdown", "agents-md", "claude-md")
TraceFormat = Literal["openai-jsonl", "anthropic-jsonl", "claude-code", "langfuse", "otlp-json"]
IMPORT_READ_TIMEOUT_S = 300.0


class AdminAPIError(Exception):
    """The admin API refused a request, or could not be asked (`status` 0)."""

    def __init__(
        self, status: int, code: str, message: str, refused: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.refused = dict(refused or {})


def _segment(value: str) -> str:
    """One path segment, escaped so a name can never climb out of its route (`..`)."""
    escaped = quote(value, safe="")
    return escaped.replace(".", "%2E") if escaped.strip(".") == "" else escaped


class AdminClient:
    """Talks to the `/admin/` API of one running proxy.

    `url` is the proxy's base URL (`http://127.0.0.1:8080`; `127.0.0.1:8080` means http);
    `token` is sent as `Authorization: Bearer` when given.
    """

    def __init__(
        self, url: str, token: str | None = None, timeout: float = 10, actor: str | None = None
    ) -> None:
        self.url = (url if "://" in url else "http://" + url).rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if actor:
            headers["X-Admin-Actor"] = actor  # who every change is recorded as
        try:
            self._http = httpx.Client(
                base_url=self.url + "/admin/", headers=headers, timeout=timeout
            )
        except httpx.InvalidURL as exc:
            message = f"invalid skillproxy URL {url!r}: {exc}"
            raise AdminAPIError(0, "invalid_url", message) from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # skillbooks and their settings

    def list_skillbooks(self) -> list[dict[str, Any]]:
        return self._data(self._json("GET", "skillbooks"))

    def get_skillbook(self, skillbook: str) -> dict[str, Any]:
        return self._json("GET", f"skillbooks/{_segment(skillbook)}")

    def list_deleted_skillbooks(self) -> list[dict[str, Any]]:
        return self._data(self._json("GET", "skillbooks", {"deleted": "true"}))

    def delete_skillbook(self, skillbook: str) -> dict[str, Any]:
        return self._json("DELETE", f"skillbooks/{_segment(skillbook)}")

    def restore_skillbook(self, skillbook: str) -> dict[str, Any]:
        return self._json("POST", f"skillbooks/{_segment(skillbook)}/restore")

    def copy_skillbook(self, skillbook: str, to: str) -> dict[str, Any]:
        path = f"skillbooks/{_segment(skillbook)}/copy"
        return self._json("POST", path, body={"to": to})

    def skillbook_history(self, skillbook: str) -> list[dict[str, Any]]:
        return self._data(self._json("GET", f"skillbooks/{_segment(skillbook)}/history"))

    def get_settings(self, skillbook: str) -> dict[str, Any]:
        return self._json("GET", f"skillbooks/{_segment(skillbook)}/settings")

    def update_settings(self, skillbook: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Set the given settings; a `None` value returns one to the configured default."""
        path = f"skillbooks/{_segment(skillbook)}/settings"
        return self._json("PATCH", path, body=dict(changes))

    # skills

    def list_skills(
        self,
        skillbook: str,
        status: str | None = None,
        section: str | None = None,
        q: str | None = None,
        deleted: bool = False,
    ) -> list[dict[str, Any]]:
        params = {"status": status, "section": section, "q": q}
        if deleted:
            params["deleted"] = "true"
        return self._data(self._json("GET", f"skillbooks/{_segment(skillbook)}/skills", params))

    def get_skill(self, skill_id: str) -> dict[str, Any]:
        return self._json("GET", f"skills/{_segment(skill_id)}")

    def outcomes(self, skill_id: str) -> dict[str, Any]:
        return self._json("GET", f"skills/{_segment(skill_id)}/outcomes")

    def delete_skill(self, skill_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"skills/{_segment(skill_id)}")

    def bulk(self, skillbook: str, ids: list[str], action: Action) -> dict[str, Any]:
        """All of them or none: a refusal's `refused` says why for each id that could not."""
        path = f"skillbooks/{_segment(skillbook)}/skills/{action}"
        return self._json("POST", path, body={"ids": ids})

    def create_skill(
        self,
        skillbook: str,
        section: str,
        content: str,
        evidence: list[Mapping[str, str]] | None = None,
    ) -> dict[str, Any]:
        body = {
            "section": section,
            "content": content,
            "evidence": [dict(item) for item in evidence or []],
        }
        return self._json("POST", f"skillbooks/{_segment(skillbook)}/skills", body=body)

    def change_status(self, skill_id: str, action: Action) -> dict[str, Any]:
        return self._json("POST", f"skills/{_segment(skill_id)}/{action}")

    def approve(self, skill_id: str) -> dict[str, Any]:
        return self.change_status(skill_id, "approve")

    def start_canary(self, skill_id: str, share: float) -> dict[str, Any]:
        """Approve as a canary: injected into `share` percent of sessions only."""
        return self._json("POST", f"skills/{_segment(skill_id)}/canary", body={"share": share})

    def canary(self, skill_id: str) -> dict[str, Any]:
        return self._json("GET", f"skills/{_segment(skill_id)}/canary")

    def stop_canary(self, skill_id: str, note: str | None = None) -> dict[str, Any]:
        body = None if note is None else {"note": note}
        return self._json("POST", f"skills/{_segment(skill_id)}/canary/stop", body=body)

    def reject(self, skill_id: str) -> dict[str, Any]:
        return self.change_status(skill_id, "reject")

    def archive(self, skill_id: str) -> dict[str, Any]:
        return self.change_status(skill_id, "archive")

    def restore(self, skill_id: str) -> dict[str, Any]:
        return self.change_status(skill_id, "restore")

    def edit_skill(
        self, skill_id: str, content: str | None = None, section: str | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in (("content", content), ("section", section)) if v is not None}
        return self._json("PATCH", f"skills/{_segment(skill_id)}", body=body)

    def rollback(self, skill_id: str, revision: int) -> dict[str, Any]:
        path = f"skills/{_segment(skill_id)}/rollback"
        return self._json("POST", path, body={"revision": revision})

    def prompt(
        self, skillbook: str, model: str | None = None, query: str | None = None
    ) -> dict[str, Any]:
        """The section as the proxy would inject it now; `text` is byte-exact."""
        params = {"model": model, "query": query}
        return self._json("GET", f"skillbooks/{_segment(skillbook)}/prompt", params)

    # export and import

    @overload
    def export(
        self, skillbook: str, format: Literal["json", "skill-md", "langfuse"] = ...
    ) -> dict[str, Any]: ...

    @overload
    def export(self, skillbook: str, format: TextFormat) -> str: ...

    def export(self, skillbook: str, format: ExportFormat = "json") -> dict[str, Any] | str:
        """The JSON document by default; `skill-md` is `{"folders": {name: SKILL.md text}}`,
        `langfuse` a prompt object, and the text formats are Markdown as the API sends it."""
        response = self._send("GET", f"skillbooks/{_segment(skillbook)}/export", {"format": format})
        return response.text if format in TEXT_FORMATS else self._decode(response)

    def import_(
        self,
        skillbook: str,
        document: Mapping[str, Any],
        mode: Literal["merge", "replace"] = "merge",
    ) -> dict[str, Any]:
        path = f"skillbooks/{_segment(skillbook)}/import"
        return self._json("POST", path, {"mode": mode}, body=dict(document))

    def import_traces(
        self,
        skillbook: str,
        chunks: Iterable[bytes],
        format: TraceFormat,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        score_names: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Stream a JSONL file (`chunks` of it, in order) to the trace import; each progress
        line goes to `on_progress`, and the summary is returned. The read timeout is long:
        the proxy answers as it commits batches, which a slow store may take a while over.
        `score_names` (langfuse): the scores taken as feedback, instead of the default ones."""
        path = f"skillbooks/{_segment(skillbook)}/traces/import"
        timeout = httpx.Timeout(self._http.timeout.connect, read=IMPORT_READ_TIMEOUT_S)
        headers = {"Content-Type": "application/x-ndjson"}
        params: dict[str, str] = {"format": format}
        if score_names:
            params["score_names"] = ",".join(score_names)
        request = self._http.build_request(
            "POST", path, params=params, content=chunks, headers=headers, timeout=timeout
        )
        try:
            response = self._http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise AdminAPIError(0, "timeout", f"skillproxy at {self.url}: {exc!r}") from None
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise self._unreachable(exc) from None
        try:
            return self._import_answer(response, on_progress)
        finally:
            response.close()

    def _import_answer(
        self, response: httpx.Response, on_progress: Callable[[dict[str, Any]], None] | None
    ) -> dict[str, Any]:
        if response.is_error:
            response.read()
            raise self._refusal(response)
        try:
            for text in response.iter_lines():
                line = json.loads(text) if text.strip() else None
                if isinstance(line, dict) and line.get("done") is True:
                    return line
                if isinstance(line, dict) and on_progress is not None:
                    on_progress(line)
        except (httpx.TransportError, ValueError) as exc:
            raise AdminAPIError(
                0, "interrupted", f"the import answer from {self.url} broke off: {exc}"
            ) from None
        raise AdminAPIError(
            0, "interrupted", f"skillproxy at {self.url} ended the import without a summary"
        )

    # episodes

    def list_episodes(
        self,
        skillbook: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: float | None = None,
    ) -> dict[str, Any]:
        """One page, newest activity first: `{"data": [...], "next_before": float | None}`."""
        params = {
            "skillbook": skillbook, "status": status, "limit": str(limit),
            "before": _number(before),
        }  # fmt: skip
        return self._json("GET", "episodes", params)

    def get_episode(self, episode_id: str) -> dict[str, Any]:
        return self._json("GET", f"episodes/{_segment(episode_id)}")

    def retry_episodes(
        self, ids: list[str] | None = None, skillbook: str | None = None
    ) -> dict[str, Any]:
        """Re-queue these failed episodes, or every failed one of `skillbook`."""
        params = {"skillbook": skillbook} if not ids else None
        return self._json("POST", "episodes/retry", params, body={"ids": ids or []})

    # the learner

    def learner_runs(self, skillbook: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The learner's runs, newest first, with their calls, tokens and cost."""
        params = {"skillbook": skillbook, "limit": str(limit)}
        return self._data(self._json("GET", "learner/runs", params))

    # traces

    def list_traces(
        self, skillbook: str | None = None, limit: int = 50, before: float | None = None
    ) -> dict[str, Any]:
        """One page, newest first: `{"data": [...], "next_before": float | None}`."""
        params = {"skillbook": skillbook, "limit": str(limit), "before": _number(before)}
        return self._json("GET", "traces", params)

    def get_trace(self, trace_id: str) -> dict[str, Any]:
        return self._json("GET", f"traces/{_segment(trace_id)}")

    # plumbing

    def _json(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | None] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        return self._decode(self._send(method, path, params, body))

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | None] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, params=query, json=body)
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise self._unreachable(exc) from None
            raise AdminAPIError(
                0, "timeout", f"skillproxy at {self.url} did not answer in time ({exc!r})"
            ) from None
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise self._unreachable(exc) from None
        if response.is_error:
            raise self._refusal(response)
        return response

    def _unreachable(self, exc: Exception) -> AdminAPIError:
        return AdminAPIError(0, "unreachable", f"cannot reach skillproxy at {self.url}: {exc}")

    def _refusal(self, response: httpx.Response) -> AdminAPIError:
        try:
            error = response.json()["error"]
            refused = error.get("refused")
            return AdminAPIError(
                response.status_code,
                str(error["code"]),
                str(error["message"]),
                refused if isinstance(refused, dict) else None,
            )
        except (ValueError, KeyError, TypeError):
            snippet = " ".join(response.text.split())[:200]
            return AdminAPIError(
                response.status_code,
                "http_error",
                f"HTTP {response.status_code} from {response.request.url}: {snippet}"
                " (is this a skillproxy?)",
            )

    def _decode(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise AdminAPIError(
                response.status_code,
                "invalid_response",
                f"{response.request.url} did not answer with a JSON object (is this a skillproxy?)",
            )
        return data

    @staticmethod
    def _data(page: dict[str, Any]) -> list[dict[str, Any]]:
        data = page.get("data")
        return data if isinstance(data, list) else []


def _number(value: float | None) -> str | None:
    return None if value is None else repr(value)
