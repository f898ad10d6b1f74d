"""The providers: one record each, and the one registry everything else derives from.

The request's `provider` values, its default model per provider, the form's choices and model
suggestions, litellm's model names, the key and base-URL variables, the base-URL forms, the tool
schema dialect and the docs' providers table all come from `REGISTRY`. Adding a provider is one
record here (and its line in tests/test_providers.py's expectations).

Pure data and string rules: no environment reads (agent.engine.llm reads the variables named here),
no litellm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

__all__ = ["BASE_URL_VARS", "DEFAULT_MODELS", "DEFAULT_PROVIDER", "KEY_VARS", "PROVIDERS", "REGISTRY", "Provider",
           "ProviderRecord", "litellm_model", "providers_markdown"]

SchemaDialect = Literal["openai", "gemini"]  # how a user's JSON Schema is translated (agent.rules.toolschema)


@dataclass(frozen=True)
class ProviderRecord:
    """Everything the workbench knows of one provider."""

    name: str  # the request's `provider` value
    litellm_prefix: str  # litellm's route: "gemini" for google
    default_model: str  # when a request names the provider but no model
    models: tuple[str, ...]  # the form's suggestions, newest first
    key_vars: tuple[str, ...]  # environment variables holding its key (the first one set wins)
    base_url_vars: tuple[str, ...]  # environment variables pointing it at another server (the first one set wins)
    url_form: str  # the base-URL form to give, for the docs (markdown)
    # litellm puts the endpoint right after the base URL: a bare host (no path) gets this appended.
    bare_host_path: str = ""
    # ...and for Anthropic it adds /v1/messages itself, so a trailing /v1 is dropped.
    drop_suffix: str = ""
    own_server: str = "a proxy or gateway"  # what its base-URL variable may point at (the missing-key advice)
    schema_dialect: SchemaDialect = "openai"
    # Gemini refuses an object schema without properties: tools without arguments go without `parameters`.
    no_empty_parameters: bool = False
    # Its name in traces (agent.service.otel), where the conventions spell it otherwise than we do:
    genai_name: str = ""  # OpenTelemetry's gen_ai.provider.name
    openinference_name: str = ""  # OpenInference's llm.provider (OpenInferenceLLMProviderValues)

    def litellm_model(self, model: str | None) -> str:
        """litellm's name for `model` (None: the default): 'gemini-2.5-flash' -> 'gemini/gemini-2.5-flash'."""
        model = (model or self.default_model).strip()
        return model if model.startswith(self.litellm_prefix + "/") else f"{self.litellm_prefix}/{model}"

    def api_base(self, raw: str) -> str:
        """A base URL as given (an environment variable's value) in the form litellm needs."""
        url = raw.strip().rstrip("/")
        path = urlsplit(url).path
        if self.drop_suffix and path.endswith(self.drop_suffix):
            return url[: -len(self.drop_suffix)]
        if self.bare_host_path and path in ("", "/"):
            return url + self.bare_host_path
        return url

    def missing_key(self) -> str:
        """What to set when neither a key nor a base URL is configured."""
        return (f"No API key for provider '{self.name}': set {self.key_vars[0]}, or point {self.base_url_vars[0]} "
                f"at {self.own_server}")


# In the contract's order (shared/seed/run-agent-api.txt lists the provider values).
REGISTRY: dict[str, ProviderRecord] = {p.name: p for p in (
    ProviderRecord(
        "openai", "openai", "o3", ("o3", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "o4-mini"),
        ("OPENAI_API_KEY",), ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
        url_form="with its `/v1`, as given: `http://localhost:11434/v1`",
        own_server="a local OpenAI-compatible server (vLLM, Ollama: http://localhost:11434/v1, llama.cpp)"),
    ProviderRecord(
        "deepseek", "deepseek", "deepseek-chat", ("deepseek-chat", "deepseek-reasoner"),
        ("DEEPSEEK_API_KEY",), ("DEEPSEEK_BASE_URL", "DEEPSEEK_API_BASE"),
        url_form="`https://api.deepseek.com`, or with `/v1`"),
    ProviderRecord(
        "anthropic", "anthropic", "claude-sonnet-4-5",
        ("claude-sonnet-4-5", "claude-opus-4-1", "claude-3-5-haiku-latest"),
        ("ANTHROPIC_API_KEY",), ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE"),
        url_form="`https://api.anthropic.com`; a trailing `/v1` is dropped", drop_suffix="/v1"),
    ProviderRecord(
        "google", "gemini", "gemini-2.5-flash", ("gemini-2.5-flash", "gemini-2.5-pro"),
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"), ("GEMINI_BASE_URL", "GEMINI_API_BASE"),
        url_form="`https://generativelanguage.googleapis.com/v1beta`; a bare host gets `/v1beta`",
        bare_host_path="/v1beta", schema_dialect="gemini", no_empty_parameters=True, genai_name="gcp.gemini"),
    ProviderRecord(
        "groq", "groq", "llama-3.3-70b-versatile", ("llama-3.3-70b-versatile", "openai/gpt-oss-120b"),
        ("GROQ_API_KEY",), ("GROQ_BASE_URL", "GROQ_API_BASE"),
        url_form="`https://api.groq.com/openai/v1`; a bare host gets `/openai/v1`", bare_host_path="/openai/v1"),
    ProviderRecord(
        "mistral", "mistral", "mistral-large-latest",
        ("mistral-large-latest", "mistral-medium-latest", "mistral-small-latest"),
        ("MISTRAL_API_KEY",), ("MISTRAL_BASE_URL", "MISTRAL_API_BASE"),
        url_form="`https://api.mistral.ai`, or with `/v1`", genai_name="mistral_ai", openinference_name="mistralai"),
    ProviderRecord(
        "together", "together_ai", "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "deepseek-ai/DeepSeek-V3"),
        ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY"), ("TOGETHER_BASE_URL", "TOGETHERAI_API_BASE"),
        url_form="`https://api.together.xyz/v1`; a bare host gets `/v1`", bare_host_path="/v1",
        genai_name="together_ai"),
)}

PROVIDERS: tuple[str, ...] = tuple(REGISTRY)
DEFAULT_PROVIDER = "openai"  # the contract's default
DEFAULT_MODELS: dict[str, str] = {p.name: p.default_model for p in REGISTRY.values()}
KEY_VARS: dict[str, tuple[str, ...]] = {p.name: p.key_vars for p in REGISTRY.values()}
BASE_URL_VARS: dict[str, tuple[str, ...]] = {p.name: p.base_url_vars for p in REGISTRY.values()}
if TYPE_CHECKING:
    Provider = str  # the type checker sees a string; pydantic sees the Literal below
else:
    Provider = Literal[PROVIDERS]  # the request's `provider` type: one of the registry's names


def litellm_model(provider: str, model: str | None) -> str:
    """The litellm model name for a provider and model: ('google', 'gemini-2.5-flash') -> 'gemini/gemini-2.5-flash'."""
    return REGISTRY[provider].litellm_model(model)


def providers_markdown() -> str:
    """The providers table of docs/engine.md (between its `providers:start`/`providers:end` markers)."""

    def names(variables: tuple[str, ...]) -> str:
        first, *rest = variables
        return f"`{first}`" + (f" (or {', '.join(f'`{v}`' for v in rest)})" if rest else "")

    lines = ["| provider | default model | key variable | base-URL variable | base-URL form (both accepted) |",
             "|---|---|---|---|---|"]
    lines += [f"| `{p.name}` | `{p.default_model}` | {names(p.key_vars)} | `{p.base_url_vars[0]}` | {p.url_form} |"
              for p in REGISTRY.values()]
    return "\n".join(lines)
