package gateway

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// AllWorkflows is the Tokens key of tokens valid for every workflow.
const AllWorkflows = "*"

// requireToken enforces Options.Tokens on routes that name a workflow:
// with any tokens configured, a request must carry
// "Authorization: Bearer <token>" with a token of that workflow (or of
// AllWorkflows). One workflow's token neither submits to nor reads another.
func (g *Gateway) requireToken(c *gin.Context) {
	if len(g.opts.Tokens) == 0 {
		c.Next()
		return
	}
	wf := c.Param("workflow")
	token, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || token == "" {
		c.Header("WWW-Authenticate", `Bearer realm="jobx"`)
		c.Error(&apiError{http.StatusUnauthorized, "unauthorized", fmt.Sprintf("workflow %q needs a token: send Authorization: Bearer <token>", wf)})
		c.Abort()
		return
	}
	for _, key := range []string{wf, AllWorkflows} {
		for _, t := range g.opts.Tokens[key] {
			if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
				c.Next()
				return
			}
		}
	}
	c.Error(&apiError{http.StatusForbidden, "forbidden", fmt.Sprintf("the token is not valid for workflow %q", wf)})
	c.Abort()
}
