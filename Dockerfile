# tandem-limiter: build stage compiles TypeScript; the runtime stage has production
# dependencies only, runs as a non-root user, and has node (not npm) as the process that
# receives signals, so SIGTERM drains and shuts down gracefully.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY lua ./lua
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY lua ./lua
COPY config ./config
RUN mkdir -p /var/lib/tandem && chown node:node /var/lib/tandem
USER node
ENV PORT=8080 ADMIN_PORT=8081 ADMIN_HOST=0.0.0.0 DATA_DIR=/var/lib/tandem
EXPOSE 8080 8081
HEALTHCHECK --interval=5s --timeout=2s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/main.js"]
