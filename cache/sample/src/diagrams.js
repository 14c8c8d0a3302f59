// Draws the fraction diagrams of the sample documents as inline SVG before printing.
//
// <figure class="shape" data-shape="pie" data-parts="4" data-shaded="1"></figure>
// shapes: pie (circle in equal sectors), bar (rectangle in equal strips), grid (rows x
// cols), diag (square cut along a diagonal), tri (triangle in equal slices from the apex),
// uneven (rectangle cut at data-split, to practise "not equal parts").
// data-size is the width in px, data-color the shade, data-label a caption underneath.
// Chromium runs this before the load event, and printing waits for the load event.
(function () {
  const INK = "#333", LINE = 1.6;

  function pie(s, n, k, fill) {
    const r = s / 2 - 2, c = s / 2;
    const at = (i) => [c + r * Math.sin((2 * Math.PI * i) / n), c - r * Math.cos((2 * Math.PI * i) / n)];
    let out = "";
    for (let i = 0; i < n; i++) {
      const [x1, y1] = at(i), [x2, y2] = at(i + 1), big = n === 1 ? 1 : 0;
      const colour = i < k ? fill : "#fff";
      out += n === 1
        ? `<circle cx="${c}" cy="${c}" r="${r}" fill="${colour}"/>`
        : `<path d="M${c},${c} L${x1},${y1} A${r},${r} 0 ${big} 1 ${x2},${y2} Z" fill="${colour}" stroke="${INK}" stroke-width="${LINE * 0.7}"/>`;
    }
    return [s, s, out + `<circle cx="${c}" cy="${c}" r="${r}" fill="none" stroke="${INK}" stroke-width="${LINE}"/>`];
  }

  function grid(w, h, rows, cols, k, fill) {
    let out = "";
    const cw = (w - 4) / cols, ch = (h - 4) / rows;
    for (let i = 0; i < rows * cols; i++) {
      const x = 2 + (i % cols) * cw, y = 2 + Math.floor(i / cols) * ch;
      out += `<rect x="${x}" y="${y}" width="${cw}" height="${ch}" fill="${i < k ? fill : "#fff"}" stroke="${INK}" stroke-width="${LINE * 0.7}"/>`;
    }
    return [w, h, out + `<rect x="2" y="2" width="${w - 4}" height="${h - 4}" fill="none" stroke="${INK}" stroke-width="${LINE}"/>`];
  }

  function diag(s, k, fill) {
    const a = 2, b = s - 2;
    return [s, s,
      `<path d="M${a},${a} L${b},${a} L${a},${b} Z" fill="${k > 0 ? fill : "#fff"}"/>` +
      `<path d="M${b},${a} L${b},${b} L${a},${b} Z" fill="${k > 1 ? fill : "#fff"}"/>` +
      `<rect x="${a}" y="${a}" width="${b - a}" height="${b - a}" fill="none" stroke="${INK}" stroke-width="${LINE}"/>` +
      `<line x1="${b}" y1="${a}" x2="${a}" y2="${b}" stroke="${INK}" stroke-width="${LINE * 0.7}"/>`];
  }

  function tri(s, n, k, fill) {
    const h = s * 0.87, apex = [s / 2, 2], y = h - 2;
    let out = "";
    for (let i = 0; i < n; i++) {
      const x1 = 2 + ((s - 4) * i) / n, x2 = 2 + ((s - 4) * (i + 1)) / n;
      out += `<path d="M${apex[0]},${apex[1]} L${x1},${y} L${x2},${y} Z" fill="${i < k ? fill : "#fff"}" stroke="${INK}" stroke-width="${LINE * 0.7}"/>`;
    }
    return [s, h, out + `<path d="M${apex[0]},${apex[1]} L2,${y} L${s - 2},${y} Z" fill="none" stroke="${INK}" stroke-width="${LINE}"/>`];
  }

  function uneven(w, h, split, fill) {
    const x = 2 + (w - 4) * split;
    return [w, h,
      `<rect x="2" y="2" width="${x - 2}" height="${h - 4}" fill="${fill}"/>` +
      `<rect x="2" y="2" width="${w - 4}" height="${h - 4}" fill="none" stroke="${INK}" stroke-width="${LINE}"/>` +
      `<line x1="${x}" y1="2" x2="${x}" y2="${h - 2}" stroke="${INK}" stroke-width="${LINE * 0.7}"/>`];
  }

  for (const fig of document.querySelectorAll("figure.shape")) {
    const d = fig.dataset, size = Number(d.size || 80), n = Number(d.parts || 1);
    const k = Number(d.shaded || 0), fill = d.color || "#f4a340";
    const drawn = {
      pie: () => pie(size, n, k, fill),
      bar: () => grid(size, size * 0.55, 1, n, k, fill),
      grid: () => grid(size, size, Number(d.rows || 2), Number(d.cols || 2), k, fill),
      diag: () => diag(size, k, fill),
      tri: () => tri(size, n, k, fill),
      uneven: () => uneven(size, size * 0.55, Number(d.split || 0.35), fill),
    }[d.shape]();
    const [w, h, body] = drawn;
    const caption = d.label ? `<figcaption>${d.label}</figcaption>` : "";
    fig.innerHTML = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">${body}</svg>${caption}`;
  }
})();
