(function () {
  var top = null;
  try { if (window.top !== window) { top = window.top.document; } } catch (e) { top = null; }
  if (!top) { return; }
  document.documentElement.classList.add(top.documentElement.classList.contains("dark") ? "dark" : "light");
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-leave]") : null;
    if (!link) { return; }
    event.preventDefault();
    var out = top.createElement("a");
    out.href = link.href;
    if (link.getAttribute("data-leave") === "new") { out.target = "_blank"; out.rel = "noopener noreferrer"; }
    top.body.appendChild(out);
    out.click();
    out.remove();
  });
})();
