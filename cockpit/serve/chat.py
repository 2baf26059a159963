"""A chat as a base model's prompt: the plain template of ``[serve]`` (runspec.config.schema's
ServeConfig). Each message follows its role's prefix, messages are joined by the separator,
and the prompt ends with the assistant's prefix (without its trailing space: the model writes
the space, as it saw in training text). The reply stops where the model begins a new user or
system turn."""

from __future__ import annotations

from dataclasses import dataclass

from cockpit.serve.params import BadRequest

ROLES = ("system", "user", "assistant", "developer")


@dataclass
class Template:
    system: str = "System: "
    user: str = "User: "
    assistant: str = "Assistant: "
    separator: str = "\n"

    @classmethod
    def from_info(cls, info: dict) -> Template:
        chat = info.get("chat") or {}
        return cls(chat.get("chat_system", cls.system), chat.get("chat_user", cls.user),
                   chat.get("chat_assistant", cls.assistant), chat.get("chat_separator", cls.separator))

    def prefix(self, role: str) -> str:
        return {"system": self.system, "developer": self.system, "user": self.user, "assistant": self.assistant}[role]

    def prompt(self, messages) -> str:
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty list of {role, content} objects")
        parts = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise BadRequest(f"messages[{i}] must be an object with a role of {', '.join(ROLES)}")
            parts.append(self.prefix(m["role"]) + text_of(m.get("content"), i))
        return self.separator.join(parts) + self.separator + self.assistant.rstrip()

    def stops(self) -> list[str]:
        """A new turn ends the reply: the separator followed by a user or system prefix."""
        return [s for s in dict.fromkeys(self.separator + p.rstrip() for p in (self.user, self.system)) if s.strip()]


def text_of(content, i: int) -> str:
    """A message's content: a string, or OpenAI's list of parts of which only text parts are readable here."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise BadRequest(f"messages[{i}].content: only text parts can be served by a text model")
            texts.append(part["text"])
        return "".join(texts)
    raise BadRequest(f"messages[{i}].content must be a string or a list of text parts")
