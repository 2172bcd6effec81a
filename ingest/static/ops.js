// Asepsis operations page: refresh the figures every few seconds without reloading.
// The panel is not replaced while keyboard focus is inside it, so a Replay button being
// reached with Tab stays where it is; a signed-out answer reloads to the sign-in form.
(() => {
  const panel = document.getElementById("panel");
  if (!panel) return;
  const every = Number(panel.dataset.every || 5) * 1000;
  async function refresh() {
    const focused = document.activeElement;
    if (focused && focused !== panel && panel.contains(focused)) return;
    try {
      const answer = await fetch(panel.dataset.refresh, { credentials: "same-origin" });
      if (answer.status === 401) { window.location.reload(); return; }
      if (answer.ok) panel.innerHTML = await answer.text();
    } catch (_) {
      // Keep the last figures on screen; the next round tries again.
    }
  }
  setInterval(refresh, every);
})();
