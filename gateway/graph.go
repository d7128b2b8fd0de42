package gateway

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/jobx/jobx/internal/trace"
	"github.com/jobx/jobx/kvmodel"
)

// graph handles GET /request/:workflow/:id/graph?format=svg|dot|png: the
// request's invocation graph, states coloured (SVG by default).
func (g *Gateway) graph(c *gin.Context) {
	wf, id := c.Param("workflow"), c.Param("id")
	c.Header(HeaderRequestID, id)
	format := c.DefaultQuery("format", "svg")
	if format != "svg" && format != "dot" && format != "png" {
		c.Error(badRequest(fmt.Sprintf("format %q: want svg, dot or png", format)))
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
	if format == "dot" {
		c.Header("Content-Type", "text/vnd.graphviz; charset=utf-8")
		gr.DOT(c.Writer)
		return
	}
	out, err := gr.Render(c.Request.Context(), format)
	if err != nil {
		c.Error(&apiError{http.StatusNotImplemented, "unavailable", err.Error()})
		return
	}
	ctype := "image/svg+xml"
	if format == "png" {
		ctype = "image/png"
	}
	c.Data(http.StatusOK, ctype, out)
}
