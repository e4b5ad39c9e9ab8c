// Risk Radar: the only script. Pages work without it; it shows the rule editor when "edit" is chosen
// and asks before deleting.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.querySelector("form.decision");
  if (form) {
    var editor = form.querySelector(".edited-rule");
    var sync = function () {
      var chosen = form.querySelector("input[name=decision]:checked");
      editor.hidden = !(chosen && chosen.value === "edit");
    };
    form.addEventListener("change", sync);
    sync();
  }
  document.querySelectorAll("form.confirm").forEach(function (f) {
    f.addEventListener("submit", function (event) {
      if (!window.confirm(f.dataset.confirm || "Sure?")) { event.preventDefault(); }
    });
  });
});
