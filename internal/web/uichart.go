package web

import (
	"strconv"
	"strings"
)

// Charts are SVG drawn on the server (no script, no chart library): the
// template "chart" in partials.html draws a chart from these coordinates,
// and a table of the same figures follows it for screen readers and for
// anyone without images.

// chart is a chart ready to draw, in a 640 x 240 view box.
type chart struct {
	Title  string
	Bars   []chartBar
	Series []chartSeries
	YTicks []chartTick
	XTicks []chartTick
	// Rows are the figures, for the table beside the chart.
	Labels  []string
	Columns []string
	Rows    [][]int64
	Empty   bool
}

type chartBar struct {
	X, Y, W, H float64
	Label      string
}

type chartSeries struct {
	Name, Class string
	Points      string
	Last        int64
}

type chartTick struct {
	Pos   float64
	Label string
	// Anchor is the SVG text-anchor of an x label: the last one ends at
	// its point so that it stays inside the chart.
	Anchor string
}

const (
	chartLeft, chartTop, chartWidth, chartHeight = 52.0, 14.0, 572.0, 196.0
)

// niceStep rounds a step up to 1, 2 or 5 times a power of ten.
func niceStep(v int64) int64 {
	if v <= 1 {
		return 1
	}
	p := int64(1)
	for {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= v {
				return m * p
			}
		}
		p *= 10
	}
}

// axis returns the top of the y axis and its ticks: four or five whole
// steps of a round size.
func axis(max int64) (int64, []chartTick) {
	step := niceStep((max + 3) / 4)
	top := (max + step - 1) / step * step
	if top == 0 {
		top = step
	}
	var ticks []chartTick
	for v := int64(0); v <= top; v += step {
		ticks = append(ticks, chartTick{Pos: chartTop + chartHeight - float64(v)/float64(top)*chartHeight, Label: uiNum(v)})
	}
	return top, ticks
}

// barChart draws one bar per value.
func barChart(title string, values []int64, labels []string) *chart {
	c := &chart{Title: title, Columns: []string{"Messages"}}
	var max int64
	for _, v := range values {
		max = max64(max, v)
	}
	c.Empty = max == 0
	top, ticks := axis(max)
	c.YTicks = ticks
	n := float64(len(values))
	slot := chartWidth / n
	for i, v := range values {
		h := float64(v) / float64(top) * chartHeight
		x := chartLeft + float64(i)*slot
		c.Bars = append(c.Bars, chartBar{X: x + slot*0.15, Y: chartTop + chartHeight - h, W: slot * 0.7, H: h, Label: uiNum(v)})
		if i < len(labels) && labels[i] != "" {
			c.XTicks = append(c.XTicks, chartTick{Pos: x + slot/2, Label: labels[i], Anchor: "middle"})
		}
		lbl := strconv.Itoa(i)
		if i < len(labels) && labels[i] != "" {
			lbl = labels[i]
		}
		if v > 0 {
			c.Labels = append(c.Labels, lbl)
			c.Rows = append(c.Rows, []int64{v})
		}
	}
	return c
}

// lineChart draws cumulative series over buckets: series[k][i] is the
// count of series k in bucket i.
func lineChart(title string, names, classes []string, series [][]int64, labels []string) *chart {
	c := &chart{Title: title, Columns: names}
	cum := make([][]int64, len(series))
	var max int64
	n := 0
	for k, s := range series {
		cum[k] = make([]int64, len(s))
		var t int64
		for i, v := range s {
			t += v
			cum[k][i] = t
		}
		max = max64(max, t)
		n = len(s)
	}
	c.Empty = max == 0 || n == 0
	if c.Empty {
		return c
	}
	top, ticks := axis(max)
	c.YTicks = ticks
	step := chartWidth
	if n > 1 {
		step = chartWidth / float64(n-1)
	}
	for k := range series {
		var b strings.Builder
		for i, v := range cum[k] {
			x := chartLeft + float64(i)*step
			y := chartTop + chartHeight - float64(v)/float64(top)*chartHeight
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.FormatFloat(x, 'f', 1, 64) + "," + strconv.FormatFloat(y, 'f', 1, 64))
		}
		c.Series = append(c.Series, chartSeries{Name: names[k], Class: classes[k], Points: b.String(), Last: cum[k][n-1]})
	}
	every := (n + 5) / 6
	for i := 0; i < n; i++ {
		if i < len(labels) && ((i%every == 0 && (i == 0 || n-1-i > every/2)) || i == n-1) {
			tk := chartTick{Pos: chartLeft + float64(i)*step, Label: labels[i], Anchor: "middle"}
			if i == n-1 {
				tk.Anchor = "end"
			} else if i == 0 {
				tk.Anchor = "start"
			}
			c.XTicks = append(c.XTicks, tk)
		}
		row := make([]int64, len(series))
		changed := false
		for k := range series {
			row[k] = cum[k][i]
			if series[k][i] != 0 {
				changed = true
			}
		}
		if changed && i < len(labels) {
			c.Labels = append(c.Labels, labels[i])
			c.Rows = append(c.Rows, row)
		}
	}
	return c
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
