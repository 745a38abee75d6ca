"""The web client in a real browser: Debian's headless Chromium with a fake microphone that plays a
WAV, driven over the DevTools protocol (plain WebSocket, no extra driver package). It loads the
page, speaks a word, and must receive the answer's text and audio; a dropped connection must be
reported and re-established, a full server and a refused microphone shown as such. Skipped,
saying why, when Chromium is not installed (apt-get install chromium)."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import urllib.request

import numpy as np
import pytest
import websockets

from dialogue_support import ANSWER, RecordingSpeaker, forced_head, make_engine, silence
from freeze_omni.audio.io import read_audio, write_wav
from freeze_omni.client import DialogueClient
from freeze_omni.serving.app import create_app
from freeze_omni.serving.local import serving
from freeze_omni.serving.replica import Replica
from freeze_omni.serving.runner import ModelServer, ServerLimits

ANSWER_BYTES = 2 * 1600 * 12  # every packet of an answer: 100 ms of PCM16 per token, 12 tokens
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")]


class DevTools:
    """The few DevTools calls the test needs, on one page target."""

    def __init__(self, socket) -> None:
        self.socket, self.ids = socket, itertools.count(1)

    async def call(self, method: str, **params) -> dict:
        call_id = next(self.ids)
        await self.socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.socket.recv())
            if reply.get("id") == call_id:
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 30.0):
        """Poll the page until `expression` is truthy (the page has no events to await from here)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not (value := await self.evaluate(expression)):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {expression}; page: "
                                     + str(await self.evaluate("document.body.innerText")))
            await asyncio.sleep(0.2)
        return value


async def open_browser(profile, wav, allow_microphone: bool = True):
    """Chromium with a fake microphone playing `wav`; the microphone is granted without asking, or
    (not `allow_microphone`) refused by the browser's permission settings."""
    flags = ["--use-fake-ui-for-media-stream"] if allow_microphone else []
    process = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
        f"--user-data-dir={profile}", *flags, "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required", "about:blank",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    for _ in range(300):
        if port_file.exists() and len(port_file.read_text().split()) >= 2:
            break
        await asyncio.sleep(0.05)
    port, browser_path = port_file.read_text().split()[:2]
    loop = asyncio.get_running_loop()
    targets = await loop.run_in_executor(None, lambda: json.loads(
        urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read()))
    page = next(t for t in targets if t["type"] == "page")
    socket = await websockets.connect(page["webSocketDebuggerUrl"], max_size=2 ** 24)
    if not allow_microphone:
        async with websockets.connect(f"ws://127.0.0.1:{port}{browser_path}") as browser:
            await DevTools(browser).call("Browser.setPermission", permission={"name": "microphone"}, setting="denied")
    return process, socket


async def refused_microphone(profile, wav, url: str) -> str:
    process, socket = await open_browser(profile, wav, allow_microphone=False)
    try:
        page = DevTools(socket)
        await page.call("Page.navigate", url=url + "/")
        await page.wait_for("document.readyState === 'complete' && !!document.getElementById('start')")
        await page.evaluate("document.getElementById('start').click()")
        return await page.wait_for("!document.getElementById('notice').hidden && "
                                   "document.getElementById('notice').textContent")
    finally:
        await socket.close()
        process.kill()
        await process.wait()


@pytest.fixture(scope="module")
def microphone_wav(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mic")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(folder / "word.wav"), "Paris."], check=True,
                   capture_output=True)
    wav = folder / "mic.wav"
    write_wav(wav, np.concatenate([silence(1.0), read_audio(folder / "word.wav"), silence(4.0)]))
    return wav


def test_the_page_talks_reconnects_and_explains_a_full_server_and_a_refused_microphone(
        llm, speech_input, detector, microphone_wav, tmp_path):
    engine = make_engine(llm, speech_input, detector, forced_head(llm, ANSWER), RecordingSpeaker(audio=True))
    server = ModelServer([Replica(engine)], ServerLimits(max_users=1))

    async def main():
        async with serving(create_app(server)) as url:
            process, socket = await open_browser(tmp_path / "profile", microphone_wav)
            try:
                page = DevTools(socket)
                await page.call("Page.navigate", url=url + "/")
                await page.wait_for("document.readyState === 'complete' && !!document.getElementById('start')")
                await page.evaluate("document.getElementById('start').click()")
                text = await page.wait_for("(document.querySelector('.assistant') || {}).textContent")
                audio = await page.wait_for(f"Number(document.body.dataset.audioBytes) >= {ANSWER_BYTES} && "
                                            "Number(document.body.dataset.audioBytes)")
                for connection in list(server.connections.values()):  # the network drops the page
                    connection.end("network")
                lost = await page.wait_for("!document.getElementById('notice').hidden && "
                                           "document.getElementById('notice').textContent")
                await page.wait_for("document.body.dataset.state === 'listening'")  # reconnected by itself
                reconnected = len(server.connections)
                await page.evaluate("document.getElementById('stop').click()")
                await page.wait_for("document.body.dataset.state === 'disconnected'")
                for _ in range(50):  # the server notices the page left
                    if not server.connections:
                        break
                    await asyncio.sleep(0.1)
                async with await DialogueClient.connect(url.replace("http", "ws") + "/ws"):  # takes the only seat
                    await page.call("Page.navigate", url=url + "/")
                    await page.wait_for("document.readyState === 'complete' && !!document.getElementById('start')")
                    await page.evaluate("document.getElementById('start').click()")
                    full = await page.wait_for("!document.getElementById('notice').hidden && "
                                               "document.getElementById('notice').textContent")
            finally:
                await socket.close()
                process.kill()
                await process.wait()
            denied = await refused_microphone(tmp_path / "refusing", microphone_wav, url)
            return text, audio, lost, reconnected, full, denied

    text, audio, lost, reconnected, full, denied = asyncio.run(main())
    assert len(text) > 0
    assert "Lost the connection" in lost and reconnected == 1
    assert "Microphone access was refused" in denied
    assert audio >= ANSWER_BYTES
    assert "busy" in full and "Trying again" in full
