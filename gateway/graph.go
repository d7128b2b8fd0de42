package gateway

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/jobx/jobx/internal/trace"
	"github.com/jobx/jobx/kvmodel"
)

// graph handles GET /request/:workflow/:id/graph?format=svg|dot|png|json:
// the request's invocation graph, states coloured (SVG by default). SVG
// comes from Graphviz's dot when it is installed and from a built-in
// layout otherwise; PNG needs dot (501 without it). JSON is the tree that
// `jobx trace tree -o json` prints.
func (g *Gateway) graph(c *gin.Context) {
	wf, id := c.Param("workflow"), c.Param("id")
	c.Header(HeaderRequestID, id)
	format := c.DefaultQuery("format", "svg")
	switch format {
	case "svg", "dot", "png", "json":
	default:
		c.Error(badRequest(fmt.Sprintf("format %q: want svg, dot, png or json", format)))
		return
	}
	if err := kvmodel.ValidateTopicName("workflow name", wf); err != nil {
		c.Error(err)
		return
	}
	gr, err := trace.Load(c.Request.Context(), g.store, wf, id, false)
	if err != nil {
		c.Error(err)
		return
	}
	c.Header("Cache-Control", "no-store")
	switch format {
	case "json":
		c.JSON(http.StatusOK, gr)
		return
	case "dot":
		c.Header("Content-Type", "text/vnd.graphviz; charset=utf-8")
		gr.DOT(c.Writer)
		return
	}
	out, err := gr.Render(c.Request.Context(), format)
	if errors.Is(err, trace.ErrNoGraphviz) {
		c.Error(&apiError{http.StatusNotImplemented, "unavailable", err.Error()})
		return
	}
	if err != nil {
		c.Error(err)
		return
	}
	ctype := "image/svg+xml"
	if format == "png" {
		ctype = "image/png"
	}
	c.Data(http.StatusOK, ctype, out)
}
