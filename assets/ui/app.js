// everestctl-api dashboard: the theme toggle, copy and expand buttons, confirmation dialogs,
// and live updates of a job's page. Every page works without this script; it only adds.
// Nothing here is inline in a page (the Content-Security-Policy allows scripts from this
// origin only), and nothing builds code from strings.
(function () {
  'use strict';

  // --- Theme: the system's unless chosen here (the choice, not any key, is kept locally). ---
  var THEMES = ['system', 'light', 'dark'];
  function storedTheme() {
    try { return localStorage.getItem('theme') || 'system'; } catch (e) { return 'system'; }
  }
  function applyTheme(theme) {
    if (theme === 'light' || theme === 'dark') {
      document.documentElement.setAttribute('data-theme', theme);
    } else {
      document.documentElement.removeAttribute('data-theme');
    }
  }
  applyTheme(storedTheme());

  function themeToggle() {
    var button = document.getElementById('theme-toggle');
    if (!button) { return; }
    var show = function () { button.textContent = 'Theme: ' + storedTheme(); };
    button.hidden = false;
    show();
    button.addEventListener('click', function () {
      var next = THEMES[(THEMES.indexOf(storedTheme()) + 1) % THEMES.length];
      try { localStorage.setItem('theme', next); } catch (e) { /* private mode: not kept */ }
      applyTheme(next);
      show();
    });
  }

  // --- Copy buttons: the clipboard API where the page is a secure context, else a fallback. ---
  function say(text) {
    var region = document.getElementById('live-status');
    if (region) { region.textContent = text; }
  }

  function copyText(text, button) {
    var done = function () {
      var label = button.textContent;
      button.textContent = 'Copied';
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text) && done(); });
    } else if (fallbackCopy(text)) {
      done();
    }
  }

  function fallbackCopy(text) {
    var area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.className = 'offscreen';
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }

  function reveal(root) {
    var hidden = root.querySelectorAll('button[data-copy], button[data-expand]');
    for (var i = 0; i < hidden.length; i++) { hidden[i].hidden = false; }
  }

  // One listener for every button, also those of content fetched later.
  function onClick(event) {
    var target = event.target.closest('[data-copy], [data-expand], [data-dialog]');
    if (!target) { return; }
    if (target.hasAttribute('data-copy')) {
      var source = document.getElementById(target.getAttribute('data-copy'));
      if (source) { copyText(source.value !== undefined ? source.value : source.textContent, target); }
    } else if (target.hasAttribute('data-expand')) {
      var pre = document.getElementById(target.getAttribute('data-expand'));
      if (pre) {
        var expanded = pre.classList.toggle('expanded');
        target.textContent = expanded ? 'Collapse' : 'Expand';
      }
    } else {
      var dialog = document.getElementById(target.getAttribute('data-dialog'));
      if (dialog && typeof dialog.showModal === 'function') {
        event.preventDefault();
        dialog.showModal();
      }
    }
  }

  // --- Live updates of a job: server-sent events, else polling every 2 s (not while hidden). ---
  function live() {
    var job = document.getElementById('job');
    if (!job || job.getAttribute('data-final') === 'true') { return; }
    var toggle = document.getElementById('live-toggle');
    if (toggle) { toggle.hidden = false; }
    var paused = false;
    var source = null;
    var timer = null;
    var busy = false;
    var lastSaid = '';

    function state() { return document.getElementById('job-state'); }

    function refresh() {
      if (busy) { return; }
      busy = true;
      fetch(job.getAttribute('data-fragment'), { credentials: 'same-origin', cache: 'no-store' })
        .then(function (response) {
          if (response.status === 401) { window.location.reload(); return null; }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html !== null) { swap(html); }
        })
        .catch(function () { /* the next event or poll tries again */ })
        .then(function () { busy = false; });
    }

    // Replaces the changing part, keeping open outputs open and the focus where it was.
    function swap(html) {
      var open = [];
      var opened = job.querySelectorAll('details[open]');
      for (var i = 0; i < opened.length; i++) { if (opened[i].id) { open.push(opened[i].id); } }
      var expanded = [];
      var big = job.querySelectorAll('pre.expanded');
      for (var k = 0; k < big.length; k++) { expanded.push(big[k].id); }
      var focused = document.activeElement && job.contains(document.activeElement) ? document.activeElement.id : '';
      job.innerHTML = html;
      open.forEach(function (id) { var d = document.getElementById(id); if (d) { d.open = true; } });
      expanded.forEach(function (id) { var p = document.getElementById(id); if (p) { p.classList.add('expanded'); } });
      if (focused) { var f = document.getElementById(focused); if (f) { f.focus(); } }
      reveal(job);
      var s = state();
      if (!s) { return; }
      var said = 'Status: ' + s.getAttribute('data-status') +
        (s.getAttribute('data-step') ? ', step ' + s.getAttribute('data-step') : '');
      if (said !== lastSaid) { say(said); lastSaid = said; }
      if (s.getAttribute('data-final') === 'true') { finish(); }
    }

    function finish() {
      stop();
      job.setAttribute('data-final', 'true');
      if (toggle) { toggle.hidden = true; }
      say('Status: ' + state().getAttribute('data-status') + '. This job has finished.');
    }

    function stop() {
      if (source) { source.close(); source = null; }
      if (timer) { clearInterval(timer); timer = null; }
    }

    function poll() {
      if (timer) { return; }
      timer = setInterval(function () { if (!document.hidden) { refresh(); } }, 2000);
    }

    function start() {
      if (!window.EventSource) { poll(); return; }
      var failures = 0;
      source = new EventSource(job.getAttribute('data-events'));
      source.addEventListener('job', function () { failures = 0; refresh(); });
      source.onerror = function () {
        failures += 1;
        // Closed for good (a 401 or 503), or failing again and again: poll instead.
        if (source && (source.readyState === EventSource.CLOSED || failures > 3)) {
          source.close();
          source = null;
          poll();
        }
      };
    }

    if (toggle) {
      toggle.addEventListener('click', function () {
        paused = !paused;
        toggle.textContent = paused ? 'Resume live updates' : 'Pause live updates';
        if (paused) { stop(); say('Live updates paused.'); } else { say('Live updates on.'); refresh(); start(); }
      });
    }
    start();
  }

  document.addEventListener('DOMContentLoaded', function () {
    themeToggle();
    reveal(document);
    document.addEventListener('click', onClick);
    live();
  });
}());
