"""The playground page at /ui/, driven in Debian's chromium by Playwright against a live server.

Each test opens a fresh browser context (so a fresh local storage) on one module-wide browser and server.
These tests take the screenshots in docs/screenshots/: into that folder with ``make screenshots``
(``ASSISTD_SCREENSHOTS=docs``), else into a temporary folder, so a test run leaves the checkout alone.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import NotFoundError
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream, Text, ToolCalls
from server import KEYS, AssistdServer

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking switches chromium stalls on a machine with no route outside.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCREENSHOTS = (
    DOCS_SCREENSHOTS
    if os.environ.get("ASSISTD_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "assistd-screenshots"
)
WEATHER_FUNCTIONS = [
    {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
TIMEOUT_MS = 10_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def ui_server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    # A server of its own: the page lists every assistant and thread of its key, and the screenshots
    # should show only what these tests made.
    srv = start_server(tmp_path_factory, databases, fake, local_embeddings="static")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, ui_server: AssistdServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=ui_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield pg
    context.close()
    assert errors == [], f"uncaught errors or blocked content in the page: {errors}"


def sign_in(page: Page, key: str = KEYS[0]) -> None:
    page.goto("/ui/")
    page.fill("#signin-key", key)
    page.press("#signin-key", "Enter")
    expect(page.locator("body[data-ready=true]")).to_have_count(1)


def create_assistant(page: Page, name: str, functions: str = "") -> str:
    page.click("#asst-new")
    page.fill("#asst-name", name)
    page.fill("#asst-instructions", "Answer briefly.")
    page.select_option("#asst-model", "fake-model")
    page.fill("#asst-functions", functions)
    page.click("#asst-save")
    expect(page.locator("#asst-status")).to_have_text(re.compile(r"^Created asst_"))
    expect(page.locator("#assistant-select option:checked")).to_have_text(name)
    return page.eval_on_selector("#assistant-select", "el => el.value")


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))


def test_ui_serves_the_page_without_a_key(ui_server: AssistdServer) -> None:
    with httpx.Client(base_url=ui_server.url) as http:
        redirect = http.get("/ui")
        assert (redirect.status_code, redirect.headers["location"]) == (308, "/ui/")
        index = http.get("/ui/")
        assert index.status_code == 200
        assert index.headers["content-type"] == "text/html; charset=utf-8"
        assert '<script type="module" src="app.js"></script>' in index.text
        assert "script-src 'self';" in index.headers["content-security-policy"]
        for name, media_type in [("app.js", "text/javascript"), ("style.css", "text/css")]:
            asset = http.get(f"/ui/{name}")
            assert (asset.status_code, asset.headers["content-type"]) == (200, f"{media_type}; charset=utf-8")
        missing = http.get("/ui/secret.py")
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "No file 'secret.py' in the playground."
        # The API itself still wants the key.
        assert http.get("/v1/assistants").status_code == 401


def test_markdown_renderer_escapes_what_the_model_writes(page: Page) -> None:
    page.goto("/ui/")
    rendered = page.evaluate(
        """async (sources) => {
            const { renderMarkdown } = await import('/ui/markdown.js');
            return sources.map(renderMarkdown);
        }""",
        [
            '<img src=x onerror="alert(1)"> **bold** [bad](javascript:alert(1)) [good](https://example.com/a?b=1&c=2)',
            "| a | b |\n|---|---|\n| `<b>` | 2 |\n\n> quoted\n\n1. one\n2. two",
        ],
    )
    assert rendered == [
        "<p>&lt;img src=x onerror=&quot;alert(1)&quot;&gt; <strong>bold</strong> [bad](javascript:alert(1)) "
        '<a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">good</a></p>',
        '<div class="table-wrap"><table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr>'
        "<td><code>&lt;b&gt;</code></td><td>2</td></tr></tbody></table></div>\n"
        "<blockquote><p>quoted</p></blockquote>\n<ol><li>one</li><li>two</li></ol>",
    ]


def test_sign_in_create_assistant_stream_reply_and_find_thread_after_reload(
    page: Page, ui_server: AssistdServer, fake: FakeUpstream
) -> None:
    page.goto("/ui/")
    expect(page.locator("#signin")).to_be_visible()
    page.fill("#signin-key", "sk-wrong")
    page.click("#signin-submit")
    expect(page.locator("#signin-error")).to_have_text("Incorrect API key provided. (HTTP 401)")
    expect(page.locator("#app")).to_be_hidden()
    page.fill("#signin-key", KEYS[0])
    page.click("#signin-submit")
    expect(page.locator("body[data-ready=true]")).to_have_count(1)
    assert page.evaluate("localStorage.getItem('assistd.apiKey')") == KEYS[0]

    assistant_id = create_assistant(page, "Docs helper")
    with make_client(ui_server) as client:
        created = client.beta.assistants.retrieve(assistant_id)
    assert (created.name, created.model, created.instructions) == (
        "Docs helper",
        "fake-model",
        "Answer briefly.",
    )

    reply = (
        "Hello **world**, this reply streams one word at a time.\n\n"
        "- Markdown *lists*\n- `inline code`\n\n"
        '```python\ndef greet(name):\n    return f"Hello {name}"  # friendly\n```'
    )
    fake.push(Text(reply, chunk_delay_s=0.12))
    page.fill("#composer-input", "Say hello in Markdown")
    page.press("#composer-input", "Enter")
    assistant_body = page.locator("article.msg-assistant .body")
    # Part of the reply is on the page while the rest is still being written: it streams.
    page.wait_for_function(
        """() => {
            const el = document.querySelector('article.msg-assistant .body');
            return el && el.textContent.includes('Hello') && !el.textContent.includes('friendly');
        }""",
        polling=20,
    )
    expect(page.locator("article.msg-assistant.streaming")).to_have_count(1)
    expect(assistant_body.locator("strong")).to_have_text("world")
    expect(assistant_body.locator("pre.code .tok-function")).to_have_text("greet")
    expect(assistant_body.locator("pre.code .tok-comment")).to_have_text("# friendly")
    expect(assistant_body.locator("li")).to_have_text(["Markdown lists", "inline code"])
    expect(page.locator("#run-state")).to_have_text("completed")
    expect(page.locator("#run-usage")).to_contain_text("tokens:")
    expect(page.locator("article.msg-assistant.streaming")).to_have_count(0)
    expect(page.locator("article.msg-user .body")).to_have_text("Say hello in Markdown")
    shot(page, "playground-chat.png")

    page.reload()
    expect(page.locator("body[data-ready=true]")).to_have_count(1)  # signed in from local storage
    thread_item = page.locator("#thread-list .thread-item", has_text="Say hello in Markdown")
    expect(thread_item).to_have_count(1)
    page.click("#new-thread")
    expect(page.locator("article.msg")).to_have_count(0)
    thread_item.locator("button.open").click()
    expect(page.locator("article.msg-assistant .body strong")).to_have_text("world")
    expect(page.locator("#thread-title")).to_have_text("Say hello in Markdown")


def test_function_call_shows_submit_form_and_completes(
    page: Page, ui_server: AssistdServer, fake: FakeUpstream
) -> None:
    sign_in(page)
    create_assistant(page, "Weather bot", json.dumps(WEATHER_FUNCTIONS, indent=2))
    fake.push(ToolCalls([("get_weather", '{"city": "Paris"}')]), Text("It is 21 °C and sunny in Paris."))
    page.fill("#composer-input", "What's the weather in Paris?")
    page.click("#send")

    form = page.locator("form.action-form")
    expect(form).to_be_visible()
    expect(form.locator("legend")).to_have_text("get_weather")
    expect(form.locator("pre")).to_have_text('{\n  "city": "Paris"\n}')
    expect(page.locator("#run-state")).to_have_text("requires_action")
    expect(page.locator("#stop")).to_be_visible()
    expect(page.locator("details.tool-function summary .name")).to_have_text("get_weather")
    form.locator("textarea").fill('{"temperature_c": 21, "sky": "sunny"}')
    shot(page, "playground-function-call.png")
    form.locator("textarea").press("Control+Enter")

    expect(page.locator("article.msg-assistant .body")).to_have_text("It is 21 °C and sunny in Paris.")
    expect(page.locator("#run-state")).to_have_text("completed")
    expect(form).to_have_count(0)
    tool_call = page.locator("details.tool-function")
    tool_call.locator("summary").click()
    expect(tool_call.locator(".tool-body pre").nth(1)).to_have_text('{"temperature_c": 21, "sky": "sunny"}')
    tool_messages = [m for m in fake.requests[-1]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ['{"temperature_c": 21, "sky": "sunny"}']


def test_api_errors_and_invalid_function_json_are_shown(page: Page) -> None:
    sign_in(page)
    page.click("#asst-new")
    page.fill("#asst-name", "Broken")
    page.fill("#asst-functions", '[{"name": "get_weather",')
    expect(page.locator("#asst-functions-error")).to_contain_text("Functions: invalid JSON")
    expect(page.locator("#asst-save")).to_be_disabled()

    # Well-formed JSON the server refuses: its 400 message is what the page shows.
    page.fill("#asst-functions", '[{"name": "get weather!"}]')
    expect(page.locator("#asst-functions-error")).to_have_text("")
    page.click("#asst-save")
    expect(page.locator("#errors .error-banner")).to_have_text(
        re.compile(r"Invalid 'tools\[0\]\.function\.name': string should match pattern .*\(HTTP 400\)")
    )
    expect(page.locator("#asst-heading")).to_have_text("New assistant")


def test_edit_and_delete_an_assistant(page: Page, ui_server: AssistdServer) -> None:
    sign_in(page)
    assistant_id = create_assistant(page, "Editable")
    page.fill("#asst-name", "Edited")
    page.select_option("#asst-model", "fake-model-large")
    page.uncheck("#asst-temperature-default")
    page.fill("#asst-temperature", "0.7")
    expect(page.locator("#asst-temperature-value")).to_have_text("0.7")
    page.check("#asst-code-interpreter")
    page.click("#asst-functions-example")
    page.click("#asst-save")
    expect(page.locator("#asst-status")).to_have_text("Saved.")
    expect(page.locator("#assistant-select option:checked")).to_have_text("Edited")
    with make_client(ui_server) as client:
        edited = client.beta.assistants.retrieve(assistant_id)
    assert (edited.name, edited.model, edited.temperature) == ("Edited", "fake-model-large", 0.7)
    assert [t.model_dump(exclude_none=True) for t in edited.tools] == [
        {"type": "code_interpreter"},
        {"type": "function", "function": WEATHER_FUNCTIONS[0]},
    ]

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#asst-delete")
    expect(page.locator(f"#assistant-select option[value='{assistant_id}']")).to_have_count(0)
    with make_client(ui_server) as client, pytest.raises(NotFoundError):
        client.beta.assistants.retrieve(assistant_id)


def test_stop_cancels_the_run(page: Page, ui_server: AssistdServer, fake: FakeUpstream) -> None:
    sign_in(page)
    create_assistant(page, "Talker")
    fake.push(Text("word " * 300, chunk_delay_s=0.03))
    page.fill("#composer-input", "Talk for a long time")
    page.press("#composer-input", "Enter")
    expect(page.locator("article.msg-assistant .body")).to_contain_text("word")
    page.click("#stop")
    expect(page.locator("#run-state")).to_have_text("cancelled")
    expect(page.locator("#stop")).to_be_hidden()
    expect(page.locator("#send")).to_be_enabled()
    thread_id = page.evaluate("decodeURIComponent(location.hash.slice(1))")
    with make_client(ui_server) as client:
        runs = client.beta.threads.runs.list(thread_id).data
    assert [r.status for r in runs] == ["cancelled"]


def test_rename_and_delete_a_thread(page: Page, ui_server: AssistdServer) -> None:
    with make_client(ui_server) as client:
        thread = client.beta.threads.create()
    sign_in(page)
    item = page.locator(f"#thread-list .thread-item[data-id='{thread.id}']")
    expect(item.locator("button.open")).to_have_text(f"Untitled · {thread.id[-6:]}")
    item.locator("button.rename").click()
    item.locator("input").fill("Renamed thread")
    item.locator("input").press("Enter")
    expect(item.locator("button.open")).to_have_text("Renamed thread")
    with make_client(ui_server) as client:
        assert client.beta.threads.retrieve(thread.id).metadata == {"title": "Renamed thread"}

    page.once("dialog", lambda dialog: dialog.accept())
    item.locator("button.delete").click()
    expect(item).to_have_count(0)
    with make_client(ui_server) as client, pytest.raises(NotFoundError):
        client.beta.threads.retrieve(thread.id)


def test_upload_to_the_assistants_vector_store_then_cite_it(
    page: Page, ui_server: AssistdServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    sign_in(page)
    assistant_id = create_assistant(page, "Librarian")
    page.check("#asst-file-search")
    page.click("#asst-save")
    expect(page.locator("#asst-status")).to_have_text("Saved.")
    notes = tmp_path / "notes.md"
    notes.write_text("The playground ships inside the assistd package.\n")
    page.click("#tab-btn-files")
    page.select_option("#files-target", "assistant")
    page.select_option("#files-tool", "file_search")
    page.set_input_files("#files-input", str(notes))
    upload = page.locator("#uploads li", has_text="notes.md")
    expect(upload.locator(".status")).to_have_text("completed")
    assert upload.locator("progress").evaluate("el => el.value") == 1
    expect(page.locator("#attached li", has_text="notes.md").locator(".status")).to_have_text("completed")
    with make_client(ui_server) as client:
        stores = client.beta.assistants.retrieve(assistant_id).tool_resources
        assert stores is not None and stores.file_search is not None
        (store_id,) = stores.file_search.vector_store_ids or []
        files = client.vector_stores.files.list(store_id).data
        tools = client.beta.assistants.retrieve(assistant_id).tools
    assert [(f.status, f.last_error) for f in files] == [("completed", None)]
    assert [t.type for t in tools] == ["file_search"]

    fake.push(
        ToolCalls([("file_search", {"queries": ["where does the playground ship"]})]),
        Text("The playground ships inside the package [1]."),
    )
    page.fill("#composer-input", "Where does the playground ship?")
    page.press("#composer-input", "Enter")
    expect(page.locator("#run-state")).to_have_text("completed")
    body = page.locator("article.msg-assistant .body")
    expect(body.locator("p")).to_have_text("The playground ships inside the package[1].")
    expect(body.locator(".citations li")).to_have_text(
        "notes.md — “The playground ships inside the assistd package.”"
    )
    search = page.locator("details.tool-file_search")
    search.locator("summary").click()
    expect(search.locator(".search-result strong")).to_have_text("notes.md")
    shot(page, "playground-files.png")


def test_code_interpreter_shows_code_logs_chart_and_a_download(
    page: Page, ui_server: AssistdServer, fake: FakeUpstream
) -> None:
    sign_in(page)
    create_assistant(page, "Analyst")
    page.check("#asst-code-interpreter")
    page.click("#asst-save")
    expect(page.locator("#asst-status")).to_have_text("Saved.")
    code = (
        "import matplotlib.pyplot as plt\n"
        "squares = [n * n for n in range(6)]\n"
        "plt.plot(squares)\n"
        "open('/mnt/data/squares.csv', 'w').write(','.join(map(str, squares)))\n"
        "print('sum', sum(squares))"
    )
    fake.push(
        ToolCalls([("code_interpreter", {"code": code})]),
        Text("The sum is 55. Here is [the data](sandbox:/mnt/data/squares.csv)."),
    )
    page.fill("#composer-input", "Plot the first squares and save them.")
    page.press("#composer-input", "Enter")
    expect(page.locator("#run-state")).to_have_text("completed", timeout=30_000)

    call = page.locator("details.tool-code_interpreter")
    call.locator("summary").click()
    expect(call.locator("pre.code code")).to_have_text(code)
    expect(call.locator(".tool-body pre").nth(1)).to_have_text("sum 55")
    body = page.locator("article.msg-assistant .body")
    expect(body.locator("button.file-chip")).to_have_text("↓ the data")
    # The chart is shown in the step and in the reply, both loaded from the file's content.
    for image in (call.locator("img"), page.locator("article.msg-assistant img")):
        expect(image).to_have_count(1)
        image.evaluate("img => img.decode()")
        assert image.evaluate("img => img.naturalWidth") > 100
    shot(page, "playground-code-interpreter.png")


def test_narrow_window_keeps_chat_usable(browser: Browser, ui_server: AssistdServer) -> None:
    with make_client(ui_server) as client:
        thread = client.beta.threads.create(
            metadata={"title": "Seen on a phone"},
            messages=[
                {"role": "user", "content": "Does this work on a phone?"},
                {
                    "role": "assistant",
                    "content": "Yes: the **sidebar** and the panel become drawers.\n\n- `Esc` closes them",
                },
            ],
        )
    context = browser.new_context(viewport={"width": 420, "height": 800}, base_url=ui_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        sign_in(page)
        # The panels are drawers: hidden until asked for, closed again with Escape or by a choice.
        expect(page.locator("#sidebar")).to_be_hidden()
        expect(page.locator("#panel")).to_be_hidden()
        expect(page.locator("#composer-input")).to_be_visible()
        page.click("#toggle-sidebar")
        expect(page.locator("#sidebar")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator("#sidebar")).to_be_hidden()
        page.click("#toggle-panel")
        expect(page.locator("#asst-name")).to_be_visible()
        page.click("#close-panel")
        expect(page.locator("#panel")).to_be_hidden()
        page.click("#toggle-sidebar")
        page.locator(f"#thread-list .thread-item[data-id='{thread.id}'] button.open").click()
        expect(page.locator("#sidebar")).to_be_hidden()
        expect(page.locator("article.msg-assistant .body strong")).to_have_text("sidebar")
        expect(page.locator("#thread-title")).to_have_text("Seen on a phone")
        shot(page, "playground-narrow.png")
    finally:
        context.close()
