/* Fusion Studio — before/after comparisons (the Create preview and the Queue's results).
 *
 * A comparison is <figure class="fs-compare"> holding the result, the original stacked on
 * top of it, and a range input. The original is clipped at the range's value through the
 * --fs-pos custom property, so the range input (arrow keys, Home/End, touch or mouse) is
 * the only control: nothing here needs a pointer. The last position is kept for the next
 * comparison the page draws (a refreshed preview keeps the person's split).
 */
(function () {
  "use strict";
  let lastPosition = 50;

  function apply(figure, value) {
    figure.style.setProperty("--fs-pos", value + "%");
    figure.dataset.position = String(value);
  }

  function adopt(figure) {
    if (figure.dataset.fsCompare === "1") return;
    figure.dataset.fsCompare = "1";
    const range = figure.querySelector(".fs-compare-range");
    if (range) range.value = String(lastPosition);
    apply(figure, lastPosition);
  }

  function scan(root) {
    if (!root || !root.querySelectorAll) return;
    if (root.matches && root.matches(".fs-compare")) adopt(root);
    for (const figure of root.querySelectorAll(".fs-compare")) adopt(figure);
  }

  function start() {
    document.addEventListener("input", (event) => {
      const range = event.target;
      if (!range || !range.classList || !range.classList.contains("fs-compare-range")) return;
      const figure = range.closest(".fs-compare");
      if (!figure) return;
      lastPosition = Number(range.value);
      apply(figure, lastPosition);
    });
    new MutationObserver((records) => {
      for (const record of records) for (const node of record.addedNodes) scan(node);
    }).observe(document.body, { childList: true, subtree: true });
    scan(document.body);
    window.fsCompare = { position: () => lastPosition };
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
