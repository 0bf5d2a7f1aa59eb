/*
 * npcnn drawing app — the page's behaviour.
 *
 * 1. The pad: Pointer Events (mouse, touch, pen) with pointer capture and coalesced events,
 *    strokes smoothed with quadratic curves through the mid-points, brush width a fixed
 *    fraction of the pad so that a drawing shrinks to MNIST-like strokes.  Everything drawn is
 *    kept as a list of items (strokes, or an uploaded picture) in pad coordinates 0..1, so
 *    undo and a resize simply redraw the list.
 * 2. Live prediction: at most one request in flight, sent ~150 ms (number mode: ~300 ms) after
 *    the drawing changes and at once when a stroke ends; an answer about an older drawing
 *    (before a clear, undo, upload or mode switch) is dropped.  An answer about the drawing as it
 *    was a moment ago (the stroke has grown since) is shown, but its digit boxes are not.
 * 3. Uploads by file picker, drag-and-drop and paste; the original file goes to the server.
 * 4. Number mode (several digits): each digit's box, digit and confidence on an overlay over the
 *    pad (never painted into the drawing), the number's confidence and a close runner-up; in
 *    single-digit mode, a hint to switch when the server says the picture holds a number.
 *    And the "what the network looks at" panel.
 * 5. Corrections: "Wrong? It was: 0 … 9 / not a digit" after an answer, by a tap or a key
 *    (0-9, N), for the digit or, in number mode, the selected digit; sent with the very picture
 *    that was read (the server recomputes what the model saw); a thank-you and Undo for a while.
 */
"use strict";

(() => {
  const BRUSH = 1 / 16; // brush width as a fraction of the pad's side
  const EXPORT_SIZE = 280; // the drawing is sent to the server as a 280 x 280 PNG
  const LIVE_DELAY_MS = 150;
  const LIVE_NUMBER_DELAY_MS = 300; // reading a number costs more: at most ~3 a second
  const EXPLAIN_DELAY_MS = 250;
  const UNDO_VISIBLE_MS = 8000; // how long the Undo of a correction stays on offer

  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const el = {
    dropZone: $("drop-zone"),
    placeholder: $("pad-placeholder"),
    boxes: $("boxes"),
    undo: $("undo"),
    clear: $("clear"),
    upload: $("upload"),
    numberMode: $("number-mode"),
    prediction: $("prediction"),
    confidence: $("confidence"),
    status: $("status"),
    resultCard: $("result"),
    numberResult: $("number-result"),
    number: $("number"),
    numberDigits: $("number-digits"),
    numberConfidence: $("number-confidence"),
    numberRunnerUp: $("number-runner-up"),
    numberHint: $("number-hint"),
    readAsNumber: $("read-as-number"),
    probabilities: $("probabilities"),
    probabilitiesHeading: $("probabilities-heading"),
    preview: $("preview"),
    explainPanel: $("explain-panel"),
    saliency: $("saliency"),
    featureMaps: $("feature-maps"),
    explainStatus: $("explain-status"),
    modelInfo: $("model-info"),
    feedback: $("feedback"),
    feedbackPrompt: $("feedback-prompt"),
    feedbackLabels: $("feedback-labels"),
    feedbackStatus: $("feedback-status"),
    feedbackUndo: $("feedback-undo"),
  };
  const blankImage = el.preview.src;
  const maxUploadBytes = Number(document.body.dataset.maxUploadBytes) || 8 * 1024 * 1024;
  const barRows = Array.from(el.probabilities.querySelectorAll(".bar-row"));

  // ---------------------------------------------------------------- drawing state

  /** Items drawn, oldest first: {kind: "stroke", points: [[x, y], ...]} or
   *  {kind: "image", bitmap, file, width, height}.  Coordinates are fractions of the pad. */
  let items = [];
  let activeStroke = null;
  let activePointerId = null;
  /** Bumped when the drawing changes in a way that makes older answers wrong. */
  let generation = 0;
  /** Bumped on every change to the drawing, a stroke's growth included: an answer about an
   *  older version is still worth showing while drawing, but its boxes no longer fit the ink. */
  let drawVersion = 0;

  /** The pad's digit boxes no longer describe the drawing: take them off. */
  function invalidateBoxes() {
    drawVersion++;
    if (el.boxes.childElementCount) el.boxes.replaceChildren();
    el.boxes.dataset.state = items.length ? "stale" : "empty";
  }

  function padColours() {
    const style = getComputedStyle(document.documentElement);
    return {
      background: style.getPropertyValue("--canvas-bg").trim() || "#ffffff",
      ink: style.getPropertyValue("--ink").trim() || "#111318",
    };
  }

  /** Where an image of size w x h lands when fitted ("contain") into the unit square. */
  function containRect(w, h) {
    const scale = Math.min(1 / w, 1 / h);
    const width = w * scale;
    const height = h * scale;
    return { x: (1 - width) / 2, y: (1 - height) / 2, width, height };
  }

  function strokePath(context, points, side) {
    const p = (i) => [points[i][0] * side, points[i][1] * side];
    context.beginPath();
    const [x0, y0] = p(0);
    context.moveTo(x0, y0);
    if (points.length === 1) {
      context.lineTo(x0 + 0.01, y0); // a dot: round caps make it a disc
    } else {
      for (let i = 1; i < points.length - 1; i++) {
        const [cx, cy] = p(i);
        const [nx, ny] = p(i + 1);
        context.quadraticCurveTo(cx, cy, (cx + nx) / 2, (cy + ny) / 2);
      }
      const [lx, ly] = p(points.length - 1);
      context.lineTo(lx, ly);
    }
    context.stroke();
  }

  /** The pen: round ends and joints, the ink's colour, BRUSH of the side x side drawing area. */
  function setPen(context, side, colours) {
    context.lineCap = "round";
    context.lineJoin = "round";
    context.strokeStyle = colours.ink;
    context.lineWidth = BRUSH * side;
  }

  /** Paint every item onto a context whose drawing area is side x side pixels. */
  function paint(context, side) {
    const colours = padColours();
    context.fillStyle = colours.background;
    context.fillRect(0, 0, side, side);
    setPen(context, side, colours);
    for (const item of items) {
      if (item.kind === "image") {
        if (item.bitmap) {
          const r = containRect(item.width, item.height);
          context.imageSmoothingQuality = "high";
          context.drawImage(item.bitmap, r.x * side, r.y * side, r.width * side, r.height * side);
        }
      } else {
        strokePath(context, item.points, side);
      }
    }
  }

  function redraw() {
    paint(ctx, canvas.width);
    const empty = items.length === 0;
    el.placeholder.hidden = !empty;
    el.undo.disabled = empty;
    el.clear.disabled = empty;
  }

  /** Draw only the newest piece of the active stroke (cheap while the pointer moves). */
  function drawStrokeTail(stroke) {
    const pts = stroke.points;
    const n = pts.length;
    if (n < 2) return;
    const side = canvas.width;
    setPen(ctx, side, padColours());
    ctx.beginPath();
    const mid = (a, b) => [((a[0] + b[0]) / 2) * side, ((a[1] + b[1]) / 2) * side];
    if (n === 2) {
      ctx.moveTo(pts[0][0] * side, pts[0][1] * side);
      const [mx, my] = mid(pts[0], pts[1]);
      ctx.lineTo(mx, my);
    } else {
      const [sx, sy] = mid(pts[n - 3], pts[n - 2]);
      const [ex, ey] = mid(pts[n - 2], pts[n - 1]);
      ctx.moveTo(sx, sy);
      ctx.quadraticCurveTo(pts[n - 2][0] * side, pts[n - 2][1] * side, ex, ey);
    }
    ctx.stroke();
  }

  function resizeCanvas() {
    const rect = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const side = Math.max(64, Math.min(1200, Math.round(rect.width * dpr)));
    if (canvas.width !== side || canvas.height !== side) {
      canvas.width = side;
      canvas.height = side;
      redraw();
    }
  }

  function pointFromEvent(event) {
    const rect = canvas.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((event.clientX - rect.left) / rect.width), clamp((event.clientY - rect.top) / rect.height)];
  }

  // ---------------------------------------------------------------- pointer input

  canvas.addEventListener("pointerdown", (event) => {
    if (!event.isPrimary || activeStroke) return;
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    try {
      canvas.setPointerCapture(event.pointerId);
    } catch {
      // pointer already gone: drawing still works without capture
    }
    activePointerId = event.pointerId;
    activeStroke = { kind: "stroke", points: [pointFromEvent(event)] };
    items.push(activeStroke);
    invalidateBoxes();
    redraw();
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!activeStroke || event.pointerId !== activePointerId) return;
    event.preventDefault();
    const events = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
    const minStep = 0.002;
    for (const e of events.length ? events : [event]) {
      const point = pointFromEvent(e);
      const last = activeStroke.points[activeStroke.points.length - 1];
      if (Math.hypot(point[0] - last[0], point[1] - last[1]) < minStep) continue;
      activeStroke.points.push(point);
      drawVersion++;
      drawStrokeTail(activeStroke);
    }
    scheduleLivePredict();
  });

  function endStroke(event) {
    if (!activeStroke || event.pointerId !== activePointerId) return;
    activeStroke = null;
    activePointerId = null;
    redraw(); // the full smoothed stroke, tail included
    predictNow();
  }

  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  canvas.addEventListener("lostpointercapture", endStroke);
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());

  // ---------------------------------------------------------------- editing

  function undo() {
    if (activeStroke || items.length === 0) return;
    items.pop();
    invalidateBoxes();
    redraw();
    generation++;
    predictNow();
  }

  function clearAll() {
    if (activeStroke) return;
    items = [];
    invalidateBoxes();
    redraw();
    generation++;
    predictNow();
  }

  el.undo.addEventListener("click", undo);
  el.clear.addEventListener("click", clearAll);

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof HTMLElement && (target.isContentEditable || /^(TEXTAREA|SELECT)$/.test(target.tagName) ||
      (target.tagName === "INPUT" && !/^(checkbox|file|button)$/.test(target.type)));
    if (typing) return;
    const inInput = target instanceof HTMLElement && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName);
    if (!inInput && !event.ctrlKey && !event.metaKey && !event.altKey && !el.feedback.hidden) {
      const key = event.key.toLowerCase();
      if (/^[0-9]$/.test(key) || key === "n") {
        event.preventDefault();
        sendCorrection(key === "n" ? "none" : key);
        return;
      }
    }
    if ((event.ctrlKey || event.metaKey) && !event.shiftKey && event.key.toLowerCase() === "z") {
      event.preventDefault();
      undo();
    } else if (event.key === "Escape" || event.key === "Delete") {
      if (items.length) {
        event.preventDefault();
        clearAll();
      }
    }
  });

  // Number mode: the user's switch, or automatic when the strokes form several separate groups
  // side by side (a user who flips the switch decides from then on).
  let userChoseMode = false;
  let autoNumberMode = false;

  el.numberMode.addEventListener("change", () => {
    userChoseMode = true;
    autoNumberMode = false;
    generation++;
    predictNow();
  });

  // The hint under a single digit that looks like several: one click reads it as a number.
  el.readAsNumber.addEventListener("click", () => {
    userChoseMode = true;
    autoNumberMode = false;
    el.numberMode.checked = true;
    el.numberHint.hidden = true;
    el.resultCard.focus({ preventScroll: true }); // the button is gone: keep focus nearby
    generation++;
    predictNow();
  });

  /** How many groups of strokes stand apart from each other left to right (0 for an upload).
   *  Strokes whose x-ranges overlap or nearly touch belong to one group (a 5's top bar, the two
   *  strokes of a 4). */
  function separateStrokeGroups() {
    if (items.some((item) => item.kind !== "stroke")) return 0;
    const ranges = items
      .map((item) => {
        const xs = item.points.map((p) => p[0]);
        return [Math.min(...xs), Math.max(...xs)];
      })
      .sort((a, b) => a[0] - b[0]);
    const gap = BRUSH; // about one stroke width of clear space between digits
    let groups = 0;
    let right = -Infinity;
    for (const [x0, x1] of ranges) {
      if (x0 > right + gap) groups++;
      right = Math.max(right, x1);
    }
    return groups;
  }

  function updateAutoNumberMode() {
    if (userChoseMode) return;
    const several = separateStrokeGroups() >= 2;
    if (several !== autoNumberMode) {
      autoNumberMode = several;
      el.numberMode.checked = several;
      generation++;
    }
  }

  // ---------------------------------------------------------------- uploads

  async function loadUpload(file) {
    if (!file) return;
    let bitmap = null;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      bitmap = null; // the browser cannot show it; the server may still read it
    }
    const item = {
      kind: "image",
      file,
      bitmap,
      width: bitmap ? bitmap.width : 1,
      height: bitmap ? bitmap.height : 1,
    };
    items = [item];
    invalidateBoxes();
    redraw();
    generation++;
    predictNow();
  }

  el.upload.addEventListener("change", () => {
    const file = el.upload.files && el.upload.files[0];
    el.upload.value = ""; // choosing the same file again still triggers "change"
    loadUpload(file);
  });

  ["dragenter", "dragover"].forEach((type) =>
    el.dropZone.addEventListener(type, (event) => {
      if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      el.dropZone.classList.add("dragging");
    }),
  );
  ["dragleave", "dragend"].forEach((type) =>
    el.dropZone.addEventListener(type, () => el.dropZone.classList.remove("dragging")),
  );
  el.dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    el.dropZone.classList.remove("dragging");
    const files = event.dataTransfer ? Array.from(event.dataTransfer.files) : [];
    loadUpload(files.find((f) => f.type.startsWith("image/")) || files[0]);
  });

  document.addEventListener("paste", (event) => {
    const data = event.clipboardData;
    if (!data) return;
    const file = Array.from(data.files || []).find((f) => f.type.startsWith("image/"));
    if (file) {
      event.preventDefault();
      loadUpload(file);
    }
  });

  // ---------------------------------------------------------------- what is sent

  /** The image to send and the geometry of its pixels on the pad (to place digit boxes). */
  async function exportDrawing() {
    const only = items.length === 1 ? items[0] : null;
    if (only && only.kind === "image" && (only.file.size <= maxUploadBytes || !only.bitmap)) {
      // An upload on its own: send the original file, every pixel of it.
      const r = containRect(only.width, only.height);
      return { blob: only.file, name: only.file.name || "upload", width: only.width, height: only.height, rect: r };
    }
    const exportCanvas = document.createElement("canvas");
    exportCanvas.width = EXPORT_SIZE;
    exportCanvas.height = EXPORT_SIZE;
    paint(exportCanvas.getContext("2d"), EXPORT_SIZE);
    const blob = await new Promise((resolve) => exportCanvas.toBlob(resolve, "image/png"));
    return { blob, name: "drawing.png", width: EXPORT_SIZE, height: EXPORT_SIZE, rect: { x: 0, y: 0, width: 1, height: 1 } };
  }

  async function postImage(url, exported) {
    const form = new FormData();
    form.append("image", exported.blob, exported.name);
    const response = await fetch(url, { method: "POST", body: form });
    let data;
    try {
      data = await response.json();
    } catch {
      data = { error: `The server answered ${response.status} without a readable reason.` };
    }
    const retryAfter = Number(response.headers.get("Retry-After")) || 1;
    return { ok: response.ok, status: response.status, data, retryAfter };
  }

  // ---------------------------------------------------------------- live prediction

  let liveTimer = null;
  let inFlight = false;
  let runAgain = false;
  let sentCount = 0;
  let appliedCount = 0;

  function scheduleLivePredict() {
    if (liveTimer !== null) return;
    if (inFlight) {
      runAgain = true; // asked again at the live pace when the answer in flight lands
      return;
    }
    liveTimer = setTimeout(predictNow, el.numberMode.checked ? LIVE_NUMBER_DELAY_MS : LIVE_DELAY_MS);
  }

  async function predictNow() {
    clearTimeout(liveTimer);
    liveTimer = null;
    if (items.length === 0) {
      updateAutoNumberMode();
      showEmpty("Draw a digit");
      return;
    }
    if (inFlight) {
      runAgain = true;
      return;
    }
    updateAutoNumberMode();
    inFlight = true;
    const myGeneration = generation;
    const myVersion = drawVersion;
    const myNumber = ++sentCount;
    const numberMode = el.numberMode.checked;
    el.prediction.dataset.busy = "true";
    try {
      const exported = await exportDrawing();
      const url = numberMode ? "/api/predict_number" : "/api/predict";
      const answer = await postImage(url, exported);
      const current = myGeneration === generation && myNumber > appliedCount && items.length > 0;
      if (current) {
        appliedCount = myNumber;
        const count = numberMode && answer.ok ? (answer.data.digits || []).length : 0;
        // A newer reading of the same drawing keeps the digit the user selected.
        const keepIndex =
          shown && shown.numberMode && numberMode && shown.generation === myGeneration && shown.count === count
            ? shown.index
            : null;
        if (answer.ok) offerCorrection(exported, numberMode, myGeneration, count);
        if (!answer.ok) showProblem(answer.status, answer.data.error);
        else if (numberMode) showNumber(answer.data, exported, myVersion === drawVersion, keepIndex);
        else showDigit(answer.data);
        if (answer.ok && !numberMode) scheduleExplain();
      }
    } catch {
      if (myGeneration === generation) showProblem(0, "Cannot reach the server — is it still running?");
    } finally {
      inFlight = false;
      delete el.prediction.dataset.busy;
      if (runAgain) {
        runAgain = false;
        if (activeStroke) scheduleLivePredict(); // still drawing: keep to the live pace
        else predictNow();
      }
    }
  }

  // ---------------------------------------------------------------- showing answers

  const percent = (p) => `${Math.round(p * 100)}%`;

  /** One bar per digit; the server's answer `top` (its digit) is highlighted. */
  function setBars(probabilities, top = -1) {
    barRows.forEach((row, digit) => {
      const p = probabilities ? probabilities[digit] : 0;
      row.querySelector(".bar-fill").style.width = `${(p * 100).toFixed(1)}%`;
      row.querySelector(".bar-value").textContent = percent(p);
      const meter = row.querySelector(".bar-track");
      meter.setAttribute("aria-valuenow", String(Math.round(p * 100)));
      meter.setAttribute("aria-valuetext", `${digit}: ${percent(p)}`);
      row.classList.toggle("top", digit === top);
    });
  }

  function setPreview(src, alt) {
    el.preview.src = src || blankImage;
    el.preview.alt = alt;
  }

  function showEmpty(message) {
    setBarsHeading("Probability of each digit");
    el.prediction.textContent = "–";
    el.prediction.dataset.state = "empty";
    el.confidence.textContent = "";
    el.status.textContent = message;
    el.status.classList.remove("unsure");
    el.numberResult.hidden = true;
    el.numberHint.hidden = true;
    el.resultCard.classList.remove("number-mode");
    el.boxes.replaceChildren();
    el.boxes.dataset.state = "empty";
    setBars(null);
    setPreview(null, "Nothing drawn yet");
    clearExplain();
    el.feedback.hidden = true;
    shown = null;
  }

  function showProblem(status, message) {
    if (status === 422) {
      // e.g. "nothing to recognise: only specks, no strokes — draw or upload a digit"
      const text = message || "nothing to recognise — draw a digit";
      showEmpty(text.charAt(0).toUpperCase() + text.slice(1));
      return;
    }
    showEmpty(message || "Something went wrong");
    el.prediction.textContent = "!";
    el.prediction.dataset.state = "error";
  }

  function showDigit(data) {
    setBarsHeading("Probability of each digit");
    el.numberResult.hidden = true;
    el.resultCard.classList.remove("number-mode");
    el.boxes.replaceChildren();
    el.boxes.dataset.state = "none";
    // The server saw two or more digits side by side: offer number mode (a missing field = no).
    el.numberHint.hidden = data.looks_like_number !== true;
    const digit = data.digit;
    if (data.is_digit === false) {
      // An 11-output model's "not a digit" answer; `digit` is still the closest digit.
      const text = document.createElement("span");
      text.className = "not-digit-text";
      text.textContent = "That doesn't look like a digit";
      const closest = document.createElement("small");
      closest.className = "closest";
      closest.textContent = `closest: ${digit}`;
      el.prediction.replaceChildren(text, closest);
      el.prediction.dataset.state = "not-digit";
      el.confidence.textContent = `${percent(data.not_digit_probability)} sure it isn't`;
      el.status.textContent = `Not a digit — the closest is ${digit} (${percent(data.confidence)})`;
      el.status.classList.add("unsure");
      setBars(data.probabilities, digit);
      setPreview(data.preview, "The drawing as the network sees it, 28 by 28 pixels");
      if (!el.numberHint.hidden) el.status.textContent += " · it looks like several digits";
      return;
    }
    el.prediction.textContent = String(digit);
    el.confidence.textContent = `${percent(data.confidence)} sure`;
    if (data.low_confidence) {
      el.prediction.dataset.state = "unsure";
      el.status.textContent = `Not sure — maybe ${digit} or ${data.runner_up}`;
      el.status.classList.add("unsure");
    } else {
      el.prediction.dataset.state = "sure";
      el.status.textContent = `It's a ${digit}`;
      el.status.classList.remove("unsure");
    }
    if (!el.numberHint.hidden) {
      el.status.textContent += " · it looks like several digits";
      el.status.classList.add("unsure");
    }
    setBars(data.probabilities, digit);
    setPreview(data.preview, `The ${digit} as the network sees it, 28 by 28 pixels`);
  }

  /** Outline each digit on the pad, labelled "7 · 98%", on the overlay over the canvas (never in
   *  the drawing itself).  Boxes are in the pixels of the image the server decoded (`imageSize`,
   *  which may be a reduced copy of a big upload), placed where that image sits on the pad, in
   *  percentages of the pad so that they follow its displayed size. */
  function placeBoxes(digits, imageSize, exported) {
    const [width, height] = imageSize || [exported.width, exported.height];
    const r = exported.rect;
    const boxes = digits.map((d, i) => {
      const [x0, y0, x1, y1] = d.box;
      const box = document.createElement("div");
      box.className = "digit-box";
      const unsure = d.low_confidence || d.is_digit === false;
      if (unsure) box.classList.add("unsure");
      const top = r.y + (y0 / height) * r.height;
      if (top < 0.12) box.classList.add("label-below"); // no room above: the label goes under
      box.style.left = `${(r.x + (x0 / width) * r.width) * 100}%`;
      box.style.top = `${top * 100}%`;
      box.style.width = `${((x1 - x0) / width) * r.width * 100}%`;
      box.style.height = `${((y1 - y0) / height) * r.height * 100}%`;
      // "7 · 98%"; a narrow box shows it on two lines, without the dot (style.css)
      const label = document.createElement("span");
      const digitText = document.createElement("b");
      digitText.textContent = d.is_digit === false ? `${d.digit}?` : String(d.digit);
      const separator = document.createElement("i");
      separator.className = "separator";
      separator.textContent = " · ";
      const detail = document.createElement("small");
      detail.textContent = d.is_digit === false ? "not a digit" : percent(d.confidence);
      label.append(digitText, separator, detail);
      box.title = unsure ? `Digit ${i + 1}: not sure` : `Digit ${i + 1}`;
      box.append(label);
      box.dataset.index = String(i);
      box.dataset.digit = String(d.digit);
      return box;
    });
    el.boxes.replaceChildren(...boxes);
    el.boxes.dataset.state = "fresh";
  }

  function setBarsHeading(text) {
    el.probabilitiesHeading.textContent = text;
  }

  function selectNumberDigit(data, index) {
    const d = data.digits[index];
    setBarsHeading(`Probability of each digit, for digit ${index + 1} of ${data.digits.length}`);
    setBars(d.probabilities, d.digit);
    setPreview(d.preview, `Digit ${index + 1}, a ${d.digit}, as the network sees it`);
    Array.from(el.numberDigits.children).forEach((li, i) => {
      li.querySelector("button").setAttribute("aria-pressed", String(i === index));
    });
    Array.from(el.boxes.children).forEach((box, i) => box.classList.toggle("selected", i === index));
    if (shown && shown.numberMode) {
      shown.index = index;
      el.feedbackPrompt.textContent = `Wrong? Digit ${index + 1} (read as ${d.digit}) was:`;
    }
  }

  /** A number's answer.  `fresh`: it is about the drawing as it is now (not a moment ago, while
   *  a stroke was growing), so its boxes fit the ink and go on the pad. */
  function showNumber(data, exported, fresh = true, keepIndex = null) {
    const digits = data.digits || [];
    el.numberResult.hidden = false;
    el.numberHint.hidden = true;
    el.resultCard.classList.add("number-mode");
    el.number.textContent = data.number;
    const unsure = digits.filter((d) => d.low_confidence || d.is_digit === false).length;
    const sure = typeof data.confidence === "number" ? `${percent(data.confidence)} sure` : "";
    el.prediction.textContent = data.number;
    el.prediction.dataset.state = unsure || data.low_confidence ? "unsure" : "sure";
    const count = `${digits.length} digit${digits.length === 1 ? "" : "s"}`;
    el.confidence.textContent = sure ? `${sure} · ${count}` : count;
    el.numberConfidence.textContent = sure ? `${sure} of the whole number` : "";
    el.numberConfidence.hidden = !sure;
    const runnerUp = data.runner_up && typeof data.runner_up.number === "string" ? data.runner_up : null;
    if (runnerUp) {
      const chance = typeof runnerUp.confidence === "number" ? ` (${percent(runnerUp.confidence)})` : "";
      el.numberRunnerUp.textContent = `or maybe ${runnerUp.number}?${chance}`;
    } else {
      el.numberRunnerUp.textContent = "";
    }
    el.numberRunnerUp.hidden = !runnerUp;
    el.status.textContent = unsure
      ? `Not sure about ${unsure} of them — check the highlighted ones`
      : `It reads ${data.number}${sure ? ` (${sure})` : ""}`;
    if (runnerUp) el.status.textContent += `, or maybe ${runnerUp.number}`;
    if (autoNumberMode) el.status.textContent += " (several digits: number mode is on)";
    el.status.classList.toggle("unsure", unsure > 0 || data.low_confidence === true);
    const chips = digits.map((d, i) => {
      const li = document.createElement("li");
      if (d.low_confidence || d.is_digit === false) li.classList.add("unsure");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "chip-button";
      button.setAttribute(
        "aria-label",
        d.is_digit === false
          ? `Digit ${i + 1}: does not look like a digit, closest ${d.digit}`
          : `Digit ${i + 1}: ${d.digit}, ${percent(d.confidence)} sure`,
      );
      const img = document.createElement("img");
      img.src = d.preview;
      img.alt = "";
      img.className = "pixel-image";
      const b = document.createElement("b");
      b.textContent = String(d.digit);
      const small = document.createElement("span");
      small.textContent = percent(d.confidence);
      button.append(img, b, small);
      button.addEventListener("click", () => selectNumberDigit(data, i));
      li.append(button);
      return li;
    });
    el.numberDigits.replaceChildren(...chips);
    if (fresh && digits.every((d) => Array.isArray(d.box) && d.box.length === 4)) {
      placeBoxes(digits, data.image_size, exported);
      el.boxes.querySelectorAll(".digit-box span").forEach((span, i) =>
        span.addEventListener("click", () => selectNumberDigit(data, i)),
      );
    } else {
      el.boxes.replaceChildren();
      el.boxes.dataset.state = "stale";
    }
    if (digits.length) selectNumberDigit(data, keepIndex !== null && keepIndex < digits.length ? keepIndex : 0);
    scheduleExplain();
  }

  // ---------------------------------------------------------------- corrections

  /** The picture whose answer is on screen: {exported, numberMode, index, generation, count}. */
  let shown = null;
  let correcting = false;
  let lastCorrection = null; // {id, token}
  let undoTimer = null;

  function offerCorrection(exported, numberMode, answerGeneration = generation, count = 0) {
    shown = { exported, numberMode, index: numberMode ? 0 : null, generation: answerGeneration, count };
    el.feedbackPrompt.textContent = "Wrong? It was:";
    el.feedback.hidden = false;
  }

  function labelText(label) {
    return label === "none" ? "not a digit" : `${label === "8" ? "an" : "a"} ${label}`;
  }

  function setLabelsDisabled(disabled) {
    el.feedbackLabels.querySelectorAll("button").forEach((b) => (b.disabled = disabled));
  }

  async function sendCorrection(label) {
    if (!shown || correcting) return;
    correcting = true;
    setLabelsDisabled(true);
    const which = shown.numberMode ? `digit ${shown.index + 1}` : "the drawing";
    el.feedbackStatus.textContent = `Sending: ${which} is ${labelText(label)}…`;
    try {
      const form = new FormData();
      form.append("image", shown.exported.blob, shown.exported.name);
      form.append("label", label);
      if (shown.numberMode && shown.index !== null) form.append("index", String(shown.index));
      const response = await fetch("/api/feedback", { method: "POST", body: form });
      let data = {};
      try {
        data = await response.json();
      } catch {
        data = { error: `The server answered ${response.status}.` };
      }
      if (response.status === 201) {
        lastCorrection = { id: data.id, token: data.undo_token };
        el.feedbackStatus.textContent = `Thank you! Saved: ${which} is ${labelText(label)}.`;
        el.feedbackUndo.hidden = false;
        clearTimeout(undoTimer);
        const visible = Math.min(UNDO_VISIBLE_MS, (Number(data.undo_seconds) || 8) * 1000 - 1000);
        undoTimer = setTimeout(() => {
          el.feedbackUndo.hidden = true;
          lastCorrection = null;
        }, visible);
      } else {
        el.feedbackStatus.textContent = `Not saved: ${data.error || `the server answered ${response.status}`}`;
      }
    } catch {
      el.feedbackStatus.textContent = "Not saved: cannot reach the server.";
    } finally {
      correcting = false;
      setLabelsDisabled(false);
    }
  }

  async function undoCorrection() {
    if (!lastCorrection) return;
    const { id, token } = lastCorrection;
    clearTimeout(undoTimer);
    try {
      const response = await fetch(`/api/feedback/${id}`, {
        method: "DELETE",
        headers: { "X-Undo-Token": token },
      });
      if (response.status === 204) {
        el.feedbackStatus.textContent = "Undone: the correction is deleted.";
      } else {
        let message = `the server answered ${response.status}`;
        try {
          message = (await response.json()).error || message;
        } catch {
          /* keep the status */
        }
        el.feedbackStatus.textContent = `Could not undo: ${message}`;
      }
    } catch {
      el.feedbackStatus.textContent = "Could not undo: cannot reach the server.";
    }
    lastCorrection = null;
    el.feedbackUndo.hidden = true;
  }

  el.feedbackLabels.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest("button[data-label]") : null;
    if (button) sendCorrection(button.dataset.label);
  });
  el.feedbackUndo.addEventListener("click", undoCorrection);

  // ---------------------------------------------------------------- explanation panel

  let explainTimer = null;
  let explainRetries = 0;
  const MAX_EXPLAIN_RETRIES = 3;
  let explainGeneration = -1;

  function clearExplain() {
    el.saliency.src = blankImage;
    el.saliency.alt = "No drawing to explain yet";
    el.featureMaps.src = blankImage;
    el.featureMaps.alt = "No feature maps yet";
    el.explainStatus.textContent = "";
  }

  function scheduleExplain() {
    if (!el.explainPanel.open) return;
    clearTimeout(explainTimer);
    explainTimer = setTimeout(explainNow, activeStroke ? EXPLAIN_DELAY_MS * 2 : EXPLAIN_DELAY_MS);
  }

  async function explainNow() {
    if (!el.explainPanel.open || items.length === 0) return;
    if (el.numberMode.checked) {
      clearExplain();
      el.explainStatus.textContent = "The explanation is for one digit: turn number mode off to see it.";
      return;
    }
    if (activeStroke) {
      scheduleExplain();
      return;
    }
    const myGeneration = generation;
    const myCount = items.length + (items.at(-1)?.points?.length || 0);
    try {
      const exported = await exportDrawing();
      const answer = await postImage("/api/explain", exported);
      const stillCurrent = myGeneration === generation && myCount === items.length + (items.at(-1)?.points?.length || 0);
      if (!stillCurrent) return;
      if (answer.status === 503 && explainRetries < MAX_EXPLAIN_RETRIES) {
        // The server sheds heavy requests when it is busy: ask again when it says to.
        explainRetries += 1;
        el.explainStatus.textContent = "The server is busy: trying again in a moment…";
        clearTimeout(explainTimer);
        explainTimer = setTimeout(explainNow, Math.min(answer.retryAfter, 10) * 1000);
        return;
      }
      explainRetries = 0;
      if (!answer.ok) {
        clearExplain();
        el.explainStatus.textContent = answer.status === 422 ? "Draw a digit to see what the network looks at." : answer.data.error;
        return;
      }
      const d = answer.data;
      explainGeneration = myGeneration;
      el.saliency.src = d.saliency;
      el.saliency.alt = `Saliency map for the predicted ${d.digit}`;
      if (d.feature_maps) {
        el.featureMaps.src = d.feature_maps;
        el.featureMaps.alt = `${d.feature_map_count} feature maps after ${d.feature_layers}`;
        el.explainStatus.textContent = `Explaining the prediction ${d.digit}: the maps of ${d.feature_map_count} filters, after ${d.feature_layers}.`;
      } else {
        el.featureMaps.src = blankImage;
        el.featureMaps.alt = "This model has no convolution layer: no feature maps";
        el.explainStatus.textContent = `Explaining the prediction ${d.digit}: the model has no convolution layer, so no filters to show.`;
      }
    } catch {
      el.explainStatus.textContent = "Cannot reach the server.";
    }
  }

  el.explainPanel.addEventListener("toggle", () => {
    if (el.explainPanel.open && items.length && explainGeneration !== generation) scheduleExplain();
  });

  // ---------------------------------------------------------------- start

  async function showModelInfo() {
    try {
      const response = await fetch("/api/health");
      if (!response.ok) return;
      const { model } = await response.json();
      const parts = [`Model: ${model.name}`];
      if (model.parameters) parts.push(`${model.parameters.toLocaleString("en")} parameters`);
      if (typeof model.test_accuracy === "number") parts.push(`${(model.test_accuracy * 100).toFixed(2)}% MNIST test accuracy`);
      if (model.outputs === 11) parts.push("says when a drawing is not a digit");
      el.modelInfo.textContent = `${parts.join(" · ")} · npcnn, a CNN written from scratch in NumPy`;
    } catch {
      // the footer keeps its default text
    }
  }

  if (typeof ResizeObserver === "function") new ResizeObserver(resizeCanvas).observe(canvas);
  window.addEventListener("resize", resizeCanvas);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redraw);
  resizeCanvas();
  redraw();
  showModelInfo();
})();
