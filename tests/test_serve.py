"""`cockpit serve`: real servers on 127.0.0.1 with ephemeral ports, talked to over real HTTP
(http.client, so streams are read as they arrive), on models trained here from tiny configs."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import PATIENCE, cockpit
from test_complete import train

from cockpit.serve.stops import StopMatcher


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    return {"conv": train(tmp, "conv", True), "plain": train(tmp, "plain", False), "dir": tmp / "runs"}


class Server:
    """``cockpit serve`` as a user starts it; the URL is read from its first line."""

    def __init__(self, runs_dir: Path, run: str, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), "serve", run, "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[str] = []
        for line in self.proc.stdout:  # blocks until the model is loaded and the port bound
            self.lines.append(line)
            if line.startswith("serving "):
                break
        else:
            raise AssertionError(f"cockpit serve did not start: {self.proc.stderr.read()}")
        for _ in range(2):
            self.lines.append(self.proc.stdout.readline())
        self.url = line.split(" at ")[1].strip()
        u = urlparse(self.url)
        self.host, self.port = u.hostname, u.port
        self.key: str | None = None

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=PATIENCE)

    def request(self, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None):
        c = self.conn()
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Content-Type": "application/json", **(headers or {})}
        if self.key and "Authorization" not in h:
            h["Authorization"] = f"Bearer {self.key}"
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        return r.status, (json.loads(text) if text.startswith(("{", "[")) else text)

    def post(self, path: str, body, **kw):
        return self.request("POST", path, body, **kw)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def stream(self, path: str, body):
        """(connection, response, iterator of the server-sent events' data)."""
        c = self.conn()
        c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()

        def events():
            while True:
                line = r.readline()
                if not line:
                    return
                line = line.decode().strip()
                if line.startswith("data: "):
                    data = line[6:]
                    yield data if data == "[DONE]" else json.loads(data)
        return c, r, events()

    def props(self) -> dict:
        return self.get("/props")[1]["cockpit"]

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out = self.proc.stdout.read()
        return self.proc.wait(timeout=PATIENCE), out


def wait_until(cond, what: str, timeout: float = PATIENCE):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def server(runs):
    s = Server(runs["dir"], runs["conv"].id)
    yield s
    code, out = s.stop()
    assert code == 0 and "stopped" in out


# -- llama.cpp --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("post", [True, False])
def test_llama_stream_carries_conviction_and_the_sampled_token_in_its_probabilities(server, post):
    body = {"prompt": "one\ttwo", "n_predict": 12, "n_probs": 2, "top_k": 50, "seed": 7, "stream": True,
            "post_sampling_probs": post}
    c, r, events = server.stream("/completion", body)
    assert r.status == 200 and r.getheader("content-type").startswith("text/event-stream")
    chunks = list(events)
    c.close()
    tokens, final = chunks[:-1], chunks[-1]
    assert len(tokens) == final["tokens_predicted"] and 1 <= len(tokens) <= 12
    assert final["stop"] is True and final["stop_type"] in ("limit", "eos") and final["content"] == ""
    key, top = ("prob", "top_probs") if post else ("logprob", "top_logprobs")
    for ch in tokens:
        assert ch["stop"] is False and isinstance(ch["conviction"], float)
        entry = ch["completion_probabilities"][0]
        assert entry["conviction"] == ch["conviction"] and entry["token"] == ch["content"]
        listed = {t["token"]: t[key] for t in entry[top]}
        # mikupad finds the chosen token's probability by its text in this list
        assert ch["content"] in listed and listed[ch["content"]] == entry[key]
        assert 1 <= len(entry[top]) <= 3  # post-sampling lists hold only tokens top-p/min-p kept
    # the same seed gives the same text without streaming
    status, whole = server.post("/completion", {**body, "stream": False})
    assert status == 200 and whole["content"] == "".join(ch["content"] for ch in tokens)
    assert whole["convictions"] == [ch["conviction"] for ch in tokens]
    assert len(whole["completion_probabilities"]) == len(tokens)


@pytest.mark.slow
def test_tokenize_detokenize_health_props(server):
    assert server.get("/health") == (200, {"status": "ok"})
    status, toks = server.post("/tokenize", {"content": "héllo"})
    assert status == 200 and toks["tokens"] == list("héllo".encode())
    status, pieces = server.post("/tokenize", {"content": "ab", "with_pieces": True})
    assert pieces["tokens"] == [{"id": 97, "piece": "a"}, {"id": 98, "piece": "b"}]
    assert server.post("/detokenize", {"tokens": toks["tokens"]}) == (200, {"content": "héllo"})
    status, props = server.get("/props")
    assert status == 200 and props["total_slots"] == 1
    assert props["default_generation_settings"]["n_ctx"] == 32 and props["cockpit"]["conviction"] is True


@pytest.mark.slow
def test_stop_string_ends_the_text_before_it(server):
    body = {"prompt": "one", "n_predict": 40, "temperature": 0, "stream": False}
    free = server.post("/completion", body)[1]["content"]
    stop = free[12:14]
    assert len(stop) == 2
    status, cut = server.post("/completion", {**body, "stop": [stop]})
    assert status == 200 and cut["content"] == free[:free.index(stop)]
    assert cut["stop_type"] == "word" and cut["stopping_word"] == stop
    # streamed, the stop string never reaches the client either
    c, r, events = server.stream("/completion", {**body, "stream": True, "stop": stop})
    chunks = list(events)
    c.close()
    assert "".join(ch["content"] for ch in chunks) == free[:free.index(stop)] and chunks[-1]["stop_type"] == "word"


def test_stop_matcher_holds_back_what_may_start_a_stop_string():
    m = StopMatcher(["END"])
    tok = lambda t: {"token": t}  # noqa: E731
    assert m.push(tok("ab")) == [tok("ab")]
    assert m.push(tok("E")) == []  # could be the start of END
    assert m.push(tok("x")) == [tok("E"), tok("x")]  # it was not
    assert m.push(tok("EN")) == []
    assert m.push(tok("Dzz")) == [] and m.word == "END"
    m = StopMatcher(["\n\n"])
    assert m.push(tok("hi\n")) == [tok("hi")] or m.push(tok("\n"))  # the token holding the start is cut
    m = StopMatcher(["zz"])
    assert m.push(tok("az")) == [] and m.flush() == [tok("az")]


# -- OpenAI -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_openai_completions_whole_and_streamed(server):
    status, models = server.get("/v1/models")
    assert status == 200 and models["data"][0]["id"].startswith("conv")
    body = {"model": models["data"][0]["id"], "prompt": "one", "max_tokens": 8, "logprobs": 3, "seed": 3, "top_k": 20}
    status, out = server.post("/v1/completions", body)
    assert status == 200 and out["object"] == "text_completion"
    choice = out["choices"][0]
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == out["usage"]["completion_tokens"] == len(choice["convictions"])
    assert "".join(lp["tokens"]) == choice["text"] and choice["finish_reason"] in ("length", "stop")
    for tok, chosen_lp, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert top[tok] == chosen_lp and chosen_lp <= 0  # the sampled token is always listed
    assert out["usage"]["prompt_tokens"] == 3
    c, r, events = server.stream("/v1/completions", {**body, "stream": True})
    chunks = list(events)
    c.close()
    assert chunks[-1] == "[DONE]" and chunks[-2]["choices"][0]["finish_reason"] in ("length", "stop")
    streamed = chunks[:-2]
    assert "".join(ch["choices"][0]["text"] for ch in streamed) == choice["text"]
    assert [ch["choices"][0]["conviction"] for ch in streamed] == choice["convictions"]


# -- bad requests ---------------------------------------------------------------------------

@pytest.mark.slow
def test_bad_requests_get_a_400_in_each_apis_shape(server):
    status, err = server.post("/completion", None, raw=b"{not json")
    assert status == 400 and err["error"]["code"] == 400 and "not valid JSON" in err["error"]["message"]
    status, err = server.post("/v1/completions", None, raw=b"[1, 2]")
    assert status == 400 and err["error"]["type"] == "invalid_request_error" and "JSON object" in err["error"]["message"]
    cases = [("/completion", {"n_predict": "many"}, "n_predict"), ("/completion", {"temperature": -1}, "temperature"),
             ("/completion", {"prompt": {"a": 1}}, "prompt"), ("/completion", {"grammar": "root ::= undefined"}, "grammar"),
             ("/completion", {"json_schema": {"type": "nonsense"}}, "json_schema"),
             ("/completion", {"logit_bias": [[65, "x"]]}, "logit_bias"),
             ("/completion", {"logit_bias": [[999999, False]]}, "999999"),
             ("/completion", {"repeat_penalty": 0}, "repeat_penalty"), ("/completion", {"n_keep": -2}, "n_keep"),
             ("/completion", {"prompt": [65, 9999]}, "9999"), ("/completion", {"stop": 3}, "stop"),
             ("/completion", {"n_predict": float("inf")}, "n_predict"), ("/completion", {"seed": float("nan")}, "seed"),
             ("/v1/completions", {"max_tokens": float("inf")}, "max_tokens"),
             ("/completion", {"prompt": [65, 9999], "stream": True}, "9999"),
             ("/v1/completions", {"n": 0}, "n = 0"), ("/v1/completions", {"logprobs": 50}, "logprobs"),
             ("/v1/chat/completions", {"messages": []}, "messages"),
             ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, "role"),
             ("/tokenize", {"content": 5}, "content"), ("/detokenize", {"tokens": ["a"]}, "tokens")]
    for path, body, named in cases:
        status, err = server.post(path, body)
        assert status == 400, (path, body, err)
        assert named in err["error"]["message"], (path, body, err)
        assert "\n" not in err["error"]["message"]
    status, err = server.post("/completion", None, raw=b'{"prompt": "' + b"a" * (2 << 20) + b'"}')
    assert status == 413 and "--max-body" in err["error"]["message"]
    status, err = server.get("/no/such/route")
    assert status == 404 and err["error"]["code"] == 404
    assert server.get("/health")[0] == 200  # and the server is still fine


# -- one generation at a time -----------------------------------------------------------------

@pytest.mark.slow
def test_a_client_that_disconnects_cancels_its_generation(server):
    before = server.props()["finished"].get("cancelled", 0)
    c, r, events = server.stream("/completion", {"prompt": "one", "n_predict": 4096, "temperature": 0, "stream": True})
    next(events)
    c.close()  # the browser tab closed, the user pressed stop
    wait_until(lambda: server.props()["finished"].get("cancelled", 0) == before + 1, "the cancel to reach the engine")
    status, out = server.post("/completion", {"prompt": "one", "n_predict": 3})
    assert status == 200 and out["tokens_predicted"] == 3
    # the same for a request that waits for its whole answer
    c = server.conn()
    c.request("POST", "/v1/completions", body=json.dumps({"prompt": "one", "max_tokens": 4096, "temperature": 0}),
              headers={"Content-Type": "application/json"})
    wait_until(lambda: server.props()["busy"], "the generation to start")
    c.close()
    wait_until(lambda: server.props()["finished"].get("cancelled", 0) == before + 2, "the second cancel")
    assert server.post("/v1/completions", {"prompt": "one", "max_tokens": 2})[0] == 200


@pytest.mark.slow
def test_requests_wait_in_order_and_past_the_limit_get_503(runs):
    s = Server(runs["dir"], runs["conv"].id, "--queue", "2")
    try:
        c, r, events = s.stream("/completion", {"prompt": "one", "n_predict": 4096, "temperature": 0, "stream": True})
        next(events)  # the model is busy with this one
        finished: list[str] = []

        def ask(name: str) -> None:
            status, out = s.post("/completion", {"prompt": name, "n_predict": 4})
            finished.append((out.get("id_task"), f"{name}:{status}"))  # the server's order, not the threads'


        threads = []
        for i, name in enumerate(("first", "second")):
            threads.append(threading.Thread(target=ask, args=(name,)))
            threads[-1].start()
            wait_until(lambda: s.props()["waiting"] == i + 1, f"{name} to wait")
        status, err = s.post("/completion", {"prompt": "third", "n_predict": 4})
        assert status == 503 and "waiting" in err["error"]["message"]
        c.close()
        for t in threads:
            t.join(PATIENCE)
        assert [name for _, name in sorted(finished)] == ["first:200", "second:200"]
    finally:
        code, out = s.stop()
    assert code == 0


@pytest.mark.slow
def test_sigterm_ends_a_running_stream_and_the_server_cleanly(runs):
    s = Server(runs["dir"], runs["conv"].id)
    c, r, events = s.stream("/completion", {"prompt": "one", "n_predict": 4096, "temperature": 0, "stream": True})
    next(events)
    s.proc.send_signal(signal.SIGTERM)
    rest = list(events)  # the stream ends with its final message instead of hanging
    assert rest and rest[-1]["stop"] is True and rest[-1]["stop_type"] == "none"
    code, out = s.stop()
    assert code == 0 and "stopped" in out


# -- the key -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_server_bound_beyond_loopback_requires_its_key(runs):
    s = Server(runs["dir"], runs["conv"].id, "--host", "0.0.0.0")
    try:
        key_line = next(line for line in s.lines if "API key:" in line)
        key = key_line.split("API key:")[1].split()[0]
        assert len(key) >= 24 and f"#key={key}" in "".join(s.lines)
        status, err = s.post("/completion", {"n_predict": 2})
        assert status == 401 and "API key" in err["error"]["message"]
        status, err = s.get("/v1/models", headers={"Authorization": "Bearer wrong"})
        assert status == 401 and err["error"]["type"] == "authentication_error"
        assert s.get("/health")[0] == 200 and s.get("/")[0] == 200  # the page asks for the key itself
        s.key = key
        assert s.post("/completion", {"n_predict": 2})[0] == 200
        assert s.get("/v1/models", headers={"X-Api-Key": key, "Authorization": ""})[0] == 200
    finally:
        s.stop()


# -- runs --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_page_can_switch_runs_and_a_bad_switch_keeps_the_model(runs, server):
    status, listed = server.get("/cockpit/runs")
    assert status == 200 and {r["id"]: r["conviction"] for r in listed["runs"]} == {
        runs["conv"].id: True, runs["plain"].id: False}
    status, err = server.post("/cockpit/load", {"run": "nope"})
    assert status == 400 and "no run 'nope'" in err["error"]["message"]
    status, err = server.post("/cockpit/load", {"run": runs["plain"].id, "step": 7})
    assert status == 400 and "7" in err["error"]["message"]
    assert server.get("/v1/models")[1]["data"][0]["id"] == runs["conv"].id
    try:
        status, info = server.post("/cockpit/load", {"run": runs["plain"].id, "step": 50})
        assert status == 200 and info["run"] == runs["plain"].id and info["step"] == 50
        status, out = server.post("/completion", {"prompt": "one", "n_predict": 3})
        assert status == 200 and out["convictions"] == [None, None, None] and out["model"] == runs["plain"].id
    finally:
        assert server.post("/cockpit/load", {"run": runs["conv"].id})[0] == 200


@pytest.mark.slow
def test_serve_refuses_bad_input_in_one_line(runs):
    r = cockpit("--runs-dir", str(runs["dir"]), "serve", "nope")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no run 'nope'" in r.stderr
    r = cockpit("--runs-dir", str(runs["dir"]), "serve", runs["conv"].id, "--step", "7")
    assert r.returncode == 2 and "7" in r.stderr.strip().splitlines()[-1]
    s = Server(runs["dir"], runs["conv"].id)
    try:
        r = cockpit("--runs-dir", str(runs["dir"]), "serve", runs["conv"].id, "--port", str(s.port))
        assert r.returncode != 0 and "in use" in r.stderr and "--port" in r.stderr
    finally:
        s.stop()


# -- the page in a real browser ----------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium and chromium-driver (.ci/run does)")
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,800"):
        opts.add_argument(arg)
    opts.binary_location = str(CHROMIUM)
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


@pytest.mark.slow
def test_the_page_generates_conviction_coloured_tokens_in_a_browser(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, PATIENCE)
    browser.get(server.url)
    wait.until(lambda d: d.find_element(By.ID, "run").get_attribute("value"))
    browser.find_element(By.ID, "max").clear()
    browser.find_element(By.ID, "max").send_keys("20")
    prompt = browser.find_element(By.ID, "prompt")
    prompt.send_keys("one two")
    prompt.send_keys(Keys.CONTROL, Keys.ENTER)  # the keyboard alone generates
    wait.until(lambda d: "tokens," in d.find_element(By.ID, "status").text)
    toks = browser.find_elements(By.CSS_SELECTOR, "#out .tok")
    assert 1 <= len(toks) <= 20
    values = [float(t.get_attribute("data-value")) for t in toks]
    colours = {t.value_of_css_property("background-color") for t in toks}
    assert len(set(values)) > 1 and len(colours) > 1  # coloured by each token's conviction
    # hover a token: its probability, conviction and alternatives; click one to continue from it
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).move_to_element(toks[2]).perform()
    tip = browser.find_element(By.ID, "tip")
    wait.until(lambda d: tip.is_displayed() and "conviction" in tip.text)
    alts = [a for a in tip.find_elements(By.CSS_SELECTOR, ".alt") if "chosen" not in a.get_attribute("class")]
    assert alts, tip.text
    picked = json.loads(alts[0].find_element(By.TAG_NAME, "span").text)
    alts[0].click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#out .alt-pick") and d.find_element(By.ID, "go").is_enabled()
               and "tokens," in d.find_element(By.ID, "status").text)  # the continuation has finished
    toks = browser.find_elements(By.CSS_SELECTOR, "#out .tok")
    assert "alt-pick" in toks[2].get_attribute("class")
    shown = toks[2].text.replace("·", " ").replace("→", "\t").replace("↵", "")
    assert shown.strip() == picked.strip()
    # the rows view: tok | 0.1234
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.CONTROL, ".")
    rows = browser.find_elements(By.CSS_SELECTOR, "#rows div")
    assert len(rows) == len(toks) and all("| " in r.text for r in rows)
    assert f"{values[0]:.4f}" in rows[0].text
