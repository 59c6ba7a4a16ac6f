// Just enough of React's hook contract to run a custom hook in node without a DOM: state that
// re-renders on change (with stable setters), refs, memoised callbacks and effects with
// cleanups run on unmount. Renders synchronously; result.current is the hook's last return.
export function renderHook(hook) {
  const slots = [];
  const pendingEffects = [];
  let i = 0;
  let mounted = true;
  let rendering = false;
  let again = false;
  const result = { current: undefined, renders: 0 };
  const same = (a, b) => a && b && a.length === b.length && a.every((v, k) => Object.is(v, b[k]));

  const React = {
    useState(init) {
      const k = i++;
      if (!slots[k]) {
        const s = { value: typeof init === 'function' ? init() : init };
        s.set = (v) => {
          const next = typeof v === 'function' ? v(s.value) : v;
          if (Object.is(next, s.value)) return;
          s.value = next;
          if (mounted) render();
        };
        slots[k] = s;
      }
      return [slots[k].value, slots[k].set];
    },
    useRef(init) {
      const k = i++;
      slots[k] ??= { current: init };
      return slots[k];
    },
    useCallback(fn, deps) {
      const k = i++;
      if (!slots[k] || !same(slots[k].deps, deps)) slots[k] = { fn, deps };
      return slots[k].fn;
    },
    useEffect(fn, deps) {
      const k = i++;
      if (!slots[k] || !deps || !same(slots[k].deps, deps)) {
        const prev = slots[k];
        slots[k] = { deps, cleanup: null };
        pendingEffects.push(() => {
          prev?.cleanup?.();
          slots[k].cleanup = fn() ?? null;
        });
      }
    },
  };

  function render() {
    if (rendering) { again = true; return; }
    rendering = true;
    do {
      again = false;
      i = 0;
      result.current = hook(React);
      result.renders++;
    } while (again);
    rendering = false;
    while (pendingEffects.length) pendingEffects.shift()();
  }

  render();
  return {
    result,
    React,
    unmount() {
      mounted = false;
      for (const s of slots) s?.cleanup?.();
    },
  };
}
