// freeze-omni web client: microphone -> 16 kHz PCM16 over one WebSocket (docs/protocol.md);
// answer audio played as it streams in, stopped at once when the server pauses or interrupts it.
"use strict";

const $ = (id) => document.getElementById(id);
const STATE_TEXT = {
  disconnected: "not connected", connecting: "connecting…", listening: "listening",
  hearing: "hearing you", answering: "answering", speaking: "speaking", error: "stopped",
};
const NO_RETRY = new Set(["unauthorised", "unsupported_audio", "bad_hello"]);

const app = {
  socket: null, audio: null, mic: null, worklet: null,
  wanted: false,          // the user pressed Start and not Stop
  retryDelay: 1000, retryTimer: null,
  outputRate: 16000, playHead: 0, sources: new Set(),
  answerLine: null, audioBytes: 0,
};

function setState(state) {
  document.body.dataset.state = state;
  $("state").textContent = STATE_TEXT[state] || state;
}

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

function addLine(kind, text) {
  const line = document.createElement("div");
  line.className = "turn " + kind;
  line.textContent = text;
  $("transcript").appendChild(line);
  line.scrollIntoView({ block: "end" });
  return line;
}

async function start() {
  app.wanted = true;
  $("start").disabled = true;
  $("stop").disabled = false;
  notice("");
  try {
    await openMicrophone();
  } catch (error) {
    app.wanted = false;
    $("start").disabled = false;
    $("stop").disabled = true;
    setState("error");
    const refused = error && (error.name === "NotAllowedError" || error.name === "SecurityError");
    notice(refused
      ? "Microphone access was refused. Allow the microphone for this page (the icon in the address bar) and press Start again."
      : "No microphone could be opened: " + (error && error.message ? error.message : error));
    return;
  }
  connect();
}

async function openMicrophone() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("this browser (or a page not served over https/localhost) gives no microphone access");
  }
  app.audio = app.audio || new AudioContext({ latencyHint: "interactive" });
  await app.audio.resume();
  app.mic = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  });
  await app.audio.audioWorklet.addModule("/static/capture-worklet.js");
  const source = app.audio.createMediaStreamSource(app.mic);
  app.worklet = new AudioWorkletNode(app.audio, "capture-16k");
  app.worklet.port.onmessage = (event) => {
    if (app.socket && app.socket.readyState === WebSocket.OPEN && app.ready) app.socket.send(event.data);
  };
  source.connect(app.worklet);
}

function connect() {
  clearTimeout(app.retryTimer);
  setState("connecting");
  const token = new URLSearchParams(location.search).get("token");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/ws` + (token ? `?token=${encodeURIComponent(token)}` : "");
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  app.socket = socket;
  app.ready = false;
  app.fatal = null;
  socket.onopen = () => {
    const hello = { type: "hello", sample_rate: 16000, format: "pcm16" };
    const prompt = $("prompt").value.trim();
    if (prompt) hello.system_prompt = prompt;
    socket.send(JSON.stringify(hello));
  };
  socket.onmessage = (event) => {
    if (typeof event.data === "string") handle(JSON.parse(event.data));
    else play(event.data);
  };
  socket.onclose = () => {
    app.ready = false;
    stopPlayback();
    if (socket !== app.socket || !app.wanted) return;
    if (app.fatal && NO_RETRY.has(app.fatal.code)) {
      stop();
      setState("error");
      return;
    }
    const seconds = Math.round(app.retryDelay / 1000);
    if (!app.fatal) notice(`Lost the connection to the server. Reconnecting in ${seconds} s…`);
    else notice(`${app.fatal.text} Trying again in ${seconds} s…`);
    setState("disconnected");
    app.retryTimer = setTimeout(connect, app.retryDelay);
    app.retryDelay = Math.min(30000, app.retryDelay * 2);
  };
}

function handle(message) {
  switch (message.type) {
    case "ready":
      app.ready = true;
      app.retryDelay = 1000;
      app.outputRate = message.output_sample_rate;
      notice("");
      setState("listening");
      break;
    case "speech_started":
      if (!app.answerLine) setState("hearing");
      break;
    case "speech_ended":
      if (document.body.dataset.state === "hearing") setState("listening");
      break;
    case "state":
      if (message.state === "answer") addLine("user", "(you spoke)");
      break;
    case "answer_started":
      app.answerLine = addLine("assistant", "");
      setState("answering");
      break;
    case "answer_text":
      if (!app.answerLine) app.answerLine = addLine("assistant", "");
      app.answerLine.textContent += message.text;
      break;
    case "answer_finished":
      app.answerLine = null;
      setState("listening");
      break;
    case "answer_paused":
      stopPlayback(); // talk-over: silent at once; the unheard audio comes again if it resumes
      setState("hearing");
      break;
    case "interrupted":
      stopPlayback(); // barge-in: not one more sample of the old answer
      if (app.answerLine) {
        app.answerLine.textContent = message.kept_text;
        app.answerLine.classList.add("interrupted");
        app.answerLine = null;
      }
      break;
    case "turn_ignored":
      addLine("ignored", message.reason === "state" ? "(not meant for me: ignored)" : "(no request heard)");
      setState("listening");
      break;
    case "error":
      showError(message);
      break;
  }
}

function showError(message) {
  const texts = {
    server_full: "The server is busy: it is serving as many people as it can.",
    unauthorised: "This server needs an access token: open the page with ?token=… in its address.",
    idle_timeout: "The session ended because no audio arrived for a while.",
    too_far_behind: "The server fell behind your audio.",
    slow_reader: "The connection was too slow for the answer audio.",
    memory: "The server ran out of memory for conversations.",
    internal: "The server failed on part of the conversation; it goes on from the last finished exchange.",
  };
  const text = texts[message.code] || message.message;
  if (message.fatal) app.fatal = { code: message.code, text };
  notice(message.fatal ? text : `${text} (${message.code})`);
}

function play(buffer) {
  const pcm = new Int16Array(buffer);
  if (!pcm.length || !app.audio) return;
  app.audioBytes += buffer.byteLength;
  document.body.dataset.audioBytes = String(app.audioBytes);
  const samples = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
  const clip = app.audio.createBuffer(1, samples.length, app.outputRate);
  clip.copyToChannel(samples, 0);
  const source = app.audio.createBufferSource();
  source.buffer = clip;
  source.connect(app.audio.destination);
  const at = Math.max(app.audio.currentTime + 0.02, app.playHead);
  source.start(at);
  app.playHead = at + clip.duration;
  app.sources.add(source);
  source.onended = () => {
    app.sources.delete(source);
    if (!app.sources.size && !app.answerLine && document.body.dataset.state === "speaking") setState("listening");
  };
  if (app.answerLine) setState("speaking");
}

function stopPlayback() {
  for (const source of app.sources) {
    try { source.stop(); } catch (_) { /* already ended */ }
  }
  app.sources.clear();
  app.playHead = 0;
}

function stop() {
  app.wanted = false;
  clearTimeout(app.retryTimer);
  if (app.socket) {
    const socket = app.socket;
    app.socket = null;
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "bye" }));
    socket.close();
  }
  stopPlayback();
  if (app.mic) app.mic.getTracks().forEach((track) => track.stop());
  if (app.worklet) app.worklet.disconnect();
  app.mic = app.worklet = null;
  $("start").disabled = false;
  $("stop").disabled = true;
  setState("disconnected");
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
